package links

import (
	"encoding/json"
	"strconv"
	"strings"
)

// TypeXHTTP is Xray's XHTTP transport (HTTP/2 requests over REALITY).
const TypeXHTTP = "xhttp"

// XHTTP modes a link may name.
const (
	ModeAuto      = "auto"
	ModePacketUp  = "packet-up"
	ModeStreamUp  = "stream-up"
	ModeStreamOne = "stream-one"
)

// Budget bounds for the budget= parameter (Burrow's connection rotation).
const (
	MinBudget = 4 << 10
	MaxBudget = 16 << 20
)

// XHTTP holds a type=xhttp link's transport parameters.
type XHTTP struct {
	Mode  string // "" (= auto), auto, packet-up, stream-up, stream-one
	Path  string // request path prefix, starts with "/"; "" = "/"
	Host  string // :authority of the requests; "" = the SNI
	Extra string // Xray's extra= JSON object, kept as given ("" if none)
	// Budget turns on Burrow's connection rotation: no TCP connection
	// carries more than Budget bytes towards the client (link parameter
	// budget=BYTES, Burrow only; other clients ignore it). 0 = off.
	Budget int64
}

// parseXHTTP reads the xhttp parameters of a type=xhttp link.
func (l *VLESS) parseXHTTP(one func(string) (string, error)) error {
	if l.Flow != "" {
		return bad("flow", "must be empty with type=xhttp (Vision needs type=tcp)")
	}
	x := &XHTTP{}
	var err error
	if x.Mode, err = one("mode"); err != nil {
		return err
	}
	switch x.Mode {
	case "", ModeAuto, ModePacketUp, ModeStreamUp, ModeStreamOne:
	default:
		return bad("mode", "%.40q is not an xhttp mode; want auto, packet-up, stream-up or stream-one", x.Mode)
	}
	if x.Path, err = one("path"); err != nil {
		return err
	}
	if x.Path != "" && !strings.HasPrefix(x.Path, "/") {
		return bad("path", "must start with /")
	}
	if err := checkText("path", x.Path, 1024); err != nil {
		return err
	}
	if x.Host, err = one("host"); err != nil {
		return err
	}
	if err := checkText("host", x.Host, 253); err != nil {
		return err
	}
	if strings.ContainsAny(x.Host, " /?#@") {
		return bad("host", "must be a host name")
	}
	if x.Extra, err = one("extra"); err != nil {
		return err
	}
	if x.Extra != "" {
		if err := checkText("extra", x.Extra, 4096); err != nil {
			return err
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(x.Extra), &obj); err != nil {
			return bad("extra", "must be a JSON object")
		}
	}
	v, err := one("budget")
	if err != nil {
		return err
	}
	if v != "" {
		b, err := strconv.ParseInt(v, 10, 64)
		if err != nil || b != 0 && (b < MinBudget || b > MaxBudget) {
			return bad("budget", "want bytes per connection between %d and %d, or 0 for off", MinBudget, MaxBudget)
		}
		x.Budget = b
	}
	l.XHTTP = x
	return nil
}

// formatXHTTP writes the xhttp parameters in the order v2rayN uses.
func (l *VLESS) formatXHTTP(param func(k, v string)) {
	x := l.XHTTP
	if x == nil {
		return
	}
	param("path", x.Path)
	param("host", x.Host)
	param("mode", x.Mode)
	param("extra", x.Extra)
	if x.Budget > 0 {
		param("budget", strconv.FormatInt(x.Budget, 10))
	}
}
