package xhttp

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

func TestParsePath(t *testing.T) {
	const sid = "0f9b5aa0-9527-4e53-9851-f79eaccd7cb1"
	tests := []struct {
		path   string
		sid    string
		seq    uint64
		hasSeq bool
	}{
		{"/", "", 0, false},
		{"/assets/", "", 0, false},
		{"/assets/" + sid, sid, 0, false},
		{"/assets/" + sid + "/", sid, 0, false},
		{"/" + sid + "/0", sid, 0, true},
		{"/a/b/" + sid + "/17", sid, 17, true},
		{"/downloads/17", "", 0, false},
		{"/" + sid + "/x1", "", 0, false},
		{"/0f9b5aa0-9527-4e53-9851-f79eaccd7cbz/1", "", 0, false},
		{sid, sid, 0, false},
	}
	for _, tc := range tests {
		sid, seq, hasSeq, err := parsePath(tc.path)
		if err != nil || sid != tc.sid || seq != tc.seq || hasSeq != tc.hasSeq {
			t.Errorf("parsePath(%q) = %q, %d, %v, %v, want %q, %d, %v", tc.path, sid, seq, hasSeq, err, tc.sid, tc.seq, tc.hasSeq)
		}
	}
	if _, _, _, err := parsePath("/" + sid + "/99999999999999999999"); err == nil {
		t.Errorf("parsePath(seq beyond uint64) = nil error, want one")
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		h          string
		start, end int64
		ok, bad    bool
	}{
		{"", 0, 0, false, false},
		{"bytes=0-1023", 0, 1023, true, false},
		{"bytes=5-", 5, 5 + maxRange - 1, true, false},
		{"bytes=10-9", 0, 0, false, true},
		{"bytes=-5", 0, 0, false, true},
		{"items=0-1", 0, 0, false, true},
		{"bytes=0", 0, 0, false, true},
		{"bytes=a-b", 0, 0, false, true},
	}
	for _, tc := range tests {
		start, end, ok, err := parseRange(tc.h)
		if start != tc.start || end != tc.end || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v, want %d, %d, %v, error %v", tc.h, start, end, ok, err, tc.start, tc.end, tc.ok, tc.bad)
		}
	}
}

func TestPaddingOK(t *testing.T) {
	tests := []struct {
		referer, query string
		want           bool
	}{
		{"https://h/p/?x_padding=" + padding(100), "", true},
		{"https://h/p/?a=1&x_padding=" + padding(16), "", true},
		{"https://h/p/?x_padding=" + padding(15), "", false},
		{"https://h/p/", "x_padding=" + padding(200), false}, // the Referer wins, as in Xray
		{"", "x_padding=" + padding(200), true},
		{"", "", false},
		{"", "x_padding=" + padding(5000), false},
	}
	for _, tc := range tests {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/p/", RawQuery: tc.query}}
		if tc.referer != "" {
			r.Header.Set("Referer", tc.referer)
		}
		if got := paddingOK(r); got != tc.want {
			t.Errorf("paddingOK(Referer %.40q, query %.40q) = %v, want %v", tc.referer, tc.query, got, tc.want)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/", "/a/0f9b5aa0-9527-4e53-9851-f79eaccd7cb1", "/0f9b5aa0-9527-4e53-9851-f79eaccd7cb1/12", "//", "/x/1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		sid, seq, hasSeq, err := parsePath(p)
		if err != nil {
			return
		}
		if sid != "" && !isSessionID(sid) {
			t.Fatalf("parsePath(%q) sid %q is not a session id", p, sid)
		}
		if hasSeq && (sid == "" || strconv.FormatUint(seq, 10) == "") {
			t.Fatalf("parsePath(%q) = seq without a session", p)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=5-", "", "bytes=-1", "bytes=9223372036854775807-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, end, ok, err := parseRange(h)
		if err == nil && ok && (start < 0 || end < start) {
			t.Fatalf("parseRange(%q) = %d-%d", h, start, end)
		}
	})
}
