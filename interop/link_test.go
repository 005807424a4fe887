package interop

import (
	"strings"
	"testing"
)

// TestParseVLESSLink checks the test's own link reader, so a failure in the
// burrow tests points at burrow and not at the harness.
func TestParseVLESSLink(t *testing.T) {
	const pbk = "Z84J2IelR9ch3k8VtlVhhs5ycBUlXA7wHBWcBrjqnAw"
	tests := []struct {
		name    string
		in      string
		want    vlessLink
		wantErr string
	}{
		{
			name: "xray share link",
			in:   "vless://5783a3e7-e373-51cd-8642-c83782b807c5@127.0.0.1:8443?encryption=none&flow=xtls-rprx-vision&security=reality&sni=cover.test&fp=chrome&pbk=" + pbk + "&sid=6ba85179e30d4fc2&spx=%2F&type=tcp#my%20server",
			want: vlessLink{
				UUID: "5783a3e7-e373-51cd-8642-c83782b807c5", Host: "127.0.0.1", Port: 8443,
				Flow: flowVision, Security: "reality", Type: "tcp", SNI: "cover.test",
				Fingerprint: "chrome", PublicKey: pbk, ShortID: "6ba85179e30d4fc2", SpiderX: "/", Name: "my server",
			},
		},
		{
			name: "ipv6 host, no type, no sid",
			in:   "vless://5783a3e7-e373-51cd-8642-c83782b807c5@[::1]:443?security=reality&sni=a.test&pbk=" + pbk,
			want: vlessLink{
				UUID: "5783a3e7-e373-51cd-8642-c83782b807c5", Host: "::1", Port: 443,
				Security: "reality", SNI: "a.test", PublicKey: pbk,
			},
		},
		{name: "wrong scheme", in: "vmess://x@h:1?security=reality&sni=a&pbk=k", wantErr: "scheme"},
		{name: "no uuid", in: "vless://h:1?security=reality&sni=a&pbk=k", wantErr: "UUID"},
		{name: "bad port", in: "vless://u@h:0?security=reality&sni=a&pbk=k", wantErr: "port"},
		{name: "tls not reality", in: "vless://u@h:1?security=tls&sni=a&pbk=k", wantErr: "security"},
		{name: "encryption", in: "vless://u@h:1?security=reality&encryption=mlkem&sni=a&pbk=k", wantErr: "encryption"},
		{name: "no pbk", in: "vless://u@h:1?security=reality&sni=a", wantErr: "pbk"},
		{name: "ws transport", in: "vless://u@h:1?security=reality&sni=a&pbk=k&type=ws", wantErr: "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVLESSLink(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseVLESSLink(%q) error = %v, want one mentioning %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseVLESSLink(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("parseVLESSLink(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// Round trip through String (which always writes encryption=none).
			again, err := parseVLESSLink(got.String())
			if err != nil {
				t.Fatalf("parseVLESSLink(%q): %v", got.String(), err)
			}
			if again != got {
				t.Fatalf("parseVLESSLink(String()) = %+v, want %+v", again, got)
			}
		})
	}
}
