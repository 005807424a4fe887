package atomicfile

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// conf stands for a config: Defaults and Validate as the configs have them.
type conf struct {
	Version int      `json:"version"`
	Listen  string   `json:"listen"`
	Keys    []string `json:"keys,omitempty"`
	Rate    float64  `json:"rate,omitempty"`
}

func checkConf(c *conf) error {
	if c.Listen == "" {
		c.Listen = ":443"
	}
	if c.Version != 1 {
		return errors.New("version must be 1")
	}
	return nil
}

const hint = "run `burrow server init --data DIR` first"

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadJSONMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	_, err := LoadJSON(p, hint, checkConf)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadJSON(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
	if msg := err.Error(); !strings.Contains(msg, p) || !strings.Contains(msg, hint) {
		t.Errorf("LoadJSON(missing) = %q, want it to name %s and say %q", msg, p, hint)
	}
}

// TestLoadJSONBad: every way a file can be wrong is an error that names
// the file and says what is wrong, and where when JSON knows it.
func TestLoadJSONBad(t *testing.T) {
	for _, c := range []struct{ name, data, want string }{
		{"syntax", "{\n  \"version\": 1,\n  \"listen\": \":443\",,\n}\n", "line 3: invalid character ','"},
		{"unknown field", `{"version":1,"extra":true}`, `unknown field "extra"`},
		{"wrong type", "{\n\"version\": \"1\"}", "line 2: json: cannot unmarshal string"},
		{"empty", "", "the file is empty"},
		{"blank", " \n\t\n", "the file is empty"},
		{"cut short", `{"version":1,`, "unexpected EOF"},
		{"second value", "{\"version\":1}\n\n{\"version\":1}\n", "line 3: more after the JSON value"},
		{"trailing brace", "{\"version\":1}\n}\n", "line 2: more after the JSON value"},
		{"check", `{"version":2}`, "version must be 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.json")
			writeFile(t, p, c.data)
			got, err := LoadJSON(p, hint, checkConf)
			if err == nil {
				t.Fatalf("LoadJSON(%q) = %+v, want an error", c.data, got)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, p+": ") || !strings.Contains(msg, c.want) {
				t.Errorf("LoadJSON(%q) = %q, want %q after the path", c.data, msg, c.want)
			}
		})
	}
}

func TestLoadJSONCheck(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, p, `{"version":1}`)
	got, err := LoadJSON(p, hint, checkConf)
	if err != nil || got.Listen != ":443" {
		t.Fatalf("LoadJSON = %+v, %v; want the default listen filled in by check", got, err)
	}
	got, err = LoadJSON[conf](p, hint, nil)
	if err != nil || got.Listen != "" || got.Version != 1 {
		t.Fatalf("LoadJSON without check = %+v, %v; want the file as it is", got, err)
	}
}

func TestLoadJSONUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files of any mode")
	}
	p := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, p, `{"version":1}`)
	if err := os.Chmod(p, 0); err != nil {
		t.Fatal(err)
	}
	_, err := LoadJSON(p, hint, checkConf)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "cannot read "+p) {
		t.Errorf("LoadJSON(mode 0) = %v, want a permission error naming %s", err, p)
	}
}

// TestWriteJSONRoundTrip: what WriteJSON writes LoadJSON reads back, the
// file has the mode asked for (an older file's wider mode does not stay),
// and it is indented JSON ending in a newline.
func TestWriteJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	writeFile(t, p, "old")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	want := &conf{Version: 1, Listen: "127.0.0.1:8443", Keys: []string{"a", "b"}, Rate: 0.5}
	if err := WriteJSON(p, want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadJSON(p, hint, checkConf)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadJSON(WriteJSON(%+v)) = %+v, %v", want, got, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after WriteJSON = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), "{\n  \"version\": 1,\n") || !strings.HasSuffix(string(b), "}\n") {
		t.Errorf("file = %q, want indented JSON ending in a newline", b)
	}
	assertOnly(t, dir, "config.json")
}

// writeOld writes the file a failing write must leave as it is.
func writeOld(t *testing.T) (dir, path string, data []byte) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "config.json")
	if err := WriteJSON(path, &conf{Version: 1, Listen: ":443"}, 0o600); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return dir, path, data
}

// TestWriteJSONMarshalFails: a value JSON cannot hold is an error naming
// the file, which stays as it was, with no temporary file beside it.
func TestWriteJSONMarshalFails(t *testing.T) {
	dir, p, before := writeOld(t)
	err := WriteJSON(p, &conf{Version: 1, Rate: math.NaN()}, 0o600)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("WriteJSON(NaN) = %v, want an error naming %s", err, p)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Fatalf("after a failed marshal the file is %q, want the old %q", after, before)
	}
	assertOnly(t, dir, "config.json")
}

// TestWriteJSONReadOnlyDir: a write the directory refuses is an error
// naming the file, which stays as it was.
func TestWriteJSONReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only directories; this case needs another user")
	}
	dir, p, before := writeOld(t)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err := WriteJSON(p, &conf{Version: 1, Listen: ":8443"}, 0o600)
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), p) {
		t.Fatalf("WriteJSON into a read-only directory = %v, want a permission error naming %s", err, p)
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Fatalf("after a failed write the file is %q, want the old %q", after, before)
	}
	assertOnly(t, dir, "config.json")
}

// assertOnly fails unless dir holds just name: no temporary file is left.
func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v, want only %s", dir, names, name)
	}
}
