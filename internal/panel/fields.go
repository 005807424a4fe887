package panel

import (
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// userFields are a user form's fields as typed; nil pointers were not sent.
type userFields struct {
	Name                        *string
	Quota, Expires, Reset, Note *string
}

// fieldError checks the fields with the admin API's own parsers and
// returns the message key of the first one refused, or "". It only words
// the refusal in the page's language: the API checks again and decides.
func fieldError(f userFields, now time.Time) string {
	if f.Name != nil && access.ValidateName(*f.Name) != nil {
		return "field.name"
	}
	if f.Quota != nil && *f.Quota != "" {
		if _, err := access.ParseSize(*f.Quota); err != nil {
			return "field.quota"
		}
	}
	if f.Expires != nil && *f.Expires != "" {
		t, err := access.ParseExpiry(*f.Expires, now)
		if err != nil || !t.IsZero() && !t.After(now) {
			return "field.expires"
		}
	}
	if f.Reset != nil {
		if _, err := access.ParseReset(*f.Reset); err != nil {
			return "field.reset"
		}
	}
	if f.Note != nil && access.ValidateNote(*f.Note) != nil {
		return "field.note"
	}
	return ""
}
