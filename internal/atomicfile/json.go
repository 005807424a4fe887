package atomicfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// LoadJSON reads the JSON file at path into a new T. It is strict, as a
// config file should be: unknown fields, an empty file and anything after
// the value are errors. check, if not nil, then fills defaults and validates
// the value. notFound is the advice given when path does not exist, e.g.
// "run `burrow server init` first"; that error wraps fs.ErrNotExist.
// Every error names path.
func LoadJSON[T any](path, notFound string, check func(*T) error) (*T, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &readError{fmt.Sprintf("%s not found: %s", path, notFound), err}
	case errors.Is(err, fs.ErrPermission):
		return nil, &readError{fmt.Sprintf("cannot read %s: permission denied; run as the user that owns it (or root)", path), err}
	case err != nil:
		return nil, err // *fs.PathError: names path
	}
	v := new(T)
	if err := decodeStrict(b, v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if check != nil {
		if err := check(v); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return v, nil
}

// decodeStrict decodes the one JSON value in b into v, refusing unknown
// fields and trailing data; errors with an offset say the line.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == io.EOF:
		return errors.New("the file is empty")
	case errors.As(err, &syntax):
		return fmt.Errorf("line %d: %w", line(b, syntax.Offset), err)
	case errors.As(err, &typ):
		return fmt.Errorf("line %d: %w", line(b, typ.Offset), err)
	case err != nil:
		return err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		rest := bytes.TrimLeft(b[end:], " \t\r\n")
		return fmt.Errorf("line %d: more after the JSON value; want one value only", line(b, int64(len(b)-len(rest))))
	}
	return nil
}

// line returns the 1-based line of byte offset off in b.
func line(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	return 1 + bytes.Count(b[:off], []byte{'\n'})
}

// readError is a read failure told in words an operator can act on; it
// keeps the underlying error for errors.Is.
type readError struct {
	msg string
	err error
}

func (e *readError) Error() string { return e.msg }
func (e *readError) Unwrap() error { return e.err }

// WriteJSON writes v to path as indented JSON with a final newline,
// atomically (see Write), with mode perm: 0o600 for a file that holds keys.
// On error the file at path is untouched.
func WriteJSON(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return Write(path, append(b, '\n'), perm)
}
