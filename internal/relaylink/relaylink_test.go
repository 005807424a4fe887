package relaylink

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func sampleToken() *Token {
	t := &Token{Name: "msk-1", Addr: "203.0.113.7:443", SNI: "www.example.com", Cover: "www.example.com:443", Fingerprint: "chrome"}
	for i := range t.PublicKey {
		t.PublicKey[i] = byte(i)
	}
	copy(t.ShortID[:], "\x01\x02\x03\x04\x05\x06\x07\x08")
	copy(t.Secret[:], "0123456789abcdef")
	return t
}

func TestTokenRoundTrip(t *testing.T) {
	want := sampleToken()
	s := want.String()
	if strings.ContainsAny(s, " \n") {
		t.Fatalf("token %q is not one word on one line", s)
	}
	got, err := ParseToken("  " + s + "\n")
	if err != nil {
		t.Fatalf("ParseToken(%q) = %v", s, err)
	}
	if *got != *want {
		t.Errorf("ParseToken(String()) = %+v, want %+v", got, want)
	}
	if r := want.Redacted(); strings.Contains(r, "3031323334") || strings.Contains(r, "0123456789abcdef") {
		t.Errorf("Redacted() = %q holds the credential", r)
	}
}

func TestParseTokenErrors(t *testing.T) {
	good := sampleToken().String()
	cases := map[string]string{
		"":                                  "must start with",
		"vless://a@b:1":                     "must start with",
		strings.Replace(good, "@", "x@", 1): "credential",
		strings.Replace(good, "sid=", "sid=0", 1):     "sid",
		strings.Replace(good, "pbk=", "pbk=*", 1):     "pbk",
		strings.Replace(good, "sni=", "sni=a%2Fb", 1): "sni",
		strings.Replace(good, "%3A443&fp", "&fp", 1):  "cover",
		strings.Replace(good, "#msk-1", "", 1):        "name",
		strings.Replace(good, ":443?", ":0?", 1):      "exit address",
		strings.Replace(good, "#", "&extra=1#", 1):    "unknown field",
	}
	for in, want := range cases {
		_, err := ParseToken(in)
		if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseToken(%q) = %v, want an ErrToken saying %q", in, err, want)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Kind: KindClient, Secret: [16]byte{1, 2, 3}},
		{Kind: KindProbe, Secret: [16]byte{9}, SNI: "vk.com", Cover: "vk.com:443", Addr: "198.51.100.1:443"},
		{Kind: KindTrunk, Secret: [16]byte{7}, Addr: "198.51.100.1:443"},
	} {
		b, err := h.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(append(b, "rest"...))
		got, err := ReadHeader(r)
		if err != nil {
			t.Fatalf("ReadHeader(Append(%+v)) = %v", h, err)
		}
		if *got != h {
			t.Errorf("ReadHeader(Append(h)) = %+v, want %+v", got, h)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Errorf("ReadHeader read past the header: %q left, want \"rest\"", rest)
		}
	}
}

func TestReadHeaderErrors(t *testing.T) {
	valid, _ := (&Header{Kind: KindClient, SNI: "a.b", Cover: "a.b:443"}).Append(nil)
	cases := map[string][]byte{
		"TLS hello":      {0x16, 0x03, 0x01, 0x02, 0x00, 1},
		"bad kind":       append([]byte("BRL\x01\x07"), make([]byte, 30)...),
		"kind zero":      append([]byte("BRL\x01\x00"), make([]byte, 30)...),
		"truncated":      valid[:len(valid)-3],
		"sni, no cover":  append(append([]byte("BRL\x01\x01"), make([]byte, 16)...), 3, 'a', '.', 'b', 0, 0),
		"cover not addr": append(append([]byte("BRL\x01\x01"), make([]byte, 16)...), 3, 'a', '.', 'b', 3, 'a', '.', 'b', 0),
		"bad relay addr": append(append([]byte("BRL\x01\x01"), make([]byte, 16)...), 0, 0, 2, 'x', 'y'),
	}
	for name, in := range cases {
		if h, err := ReadHeader(bytes.NewReader(in)); err == nil {
			t.Errorf("ReadHeader(%s) = %+v, want an error", name, h)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, h := range []Header{{Kind: KindClient}, {Kind: KindProbe, SNI: "vk.com", Cover: "vk.com:443", Addr: "1.2.3.4:443"}} {
		b, _ := h.Append(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := ReadHeader(bytes.NewReader(in))
		if err != nil {
			return
		}
		b, err := h.Append(nil)
		if err != nil {
			t.Fatalf("Append(ReadHeader(in)) = %v", err)
		}
		if !bytes.HasPrefix(in, b) {
			t.Fatalf("Append(ReadHeader(%x)) = %x, not a prefix of the input", in, b)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add(sampleToken().String())
	f.Add("burrow-relay://@:")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil || *again != *tok {
			t.Fatalf("ParseToken(String()) of %q = %+v, %v; want %+v", s, again, err, tok)
		}
	})
}
