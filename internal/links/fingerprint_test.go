package links

import (
	"strings"
	"testing"
)

// xrayFingerprints are the fp names Xray-core accepts (transport/internet/tls/tls.go of
// v1.260327.0 and of its later main branch: PresetFingerprints, ModernFingerprints and
// OtherFingerprints), copied from there; "unsafe" and "hellogolang" are left out, as Xray
// refuses them with REALITY.
var xrayFingerprints = strings.Fields(`
	chrome firefox safari ios android edge 360 qq random randomized randomizednoalpn
	hellofirefox_120 hellofirefox_148 hellochrome_120 hellochrome_131 hellochrome_133 helloios_13
	helloios_14 helloedge_106 hellosafari_26_3 hello360_11_0 helloqq_11_1
	hellorandomized hellorandomizedalpn hellorandomizednoalpn hellofirefox_auto
	hellofirefox_55 hellofirefox_56 hellofirefox_63 hellofirefox_65 hellofirefox_99 hellofirefox_102
	hellofirefox_105 hellochrome_auto hellochrome_58 hellochrome_62 hellochrome_70 hellochrome_72
	hellochrome_83 hellochrome_87 hellochrome_96 hellochrome_100 hellochrome_102
	hellochrome_106_shuffle helloios_auto helloios_11_1 helloios_12_1 helloandroid_11_okhttp
	helloedge_85 helloedge_auto hellosafari_16_0 hellosafari_auto hello360_auto hello360_7_5
	helloqq_auto hellochrome_100_psk hellochrome_112_psk_shuf hellochrome_114_padding_psk_shuf
	hellochrome_115_pq hellochrome_115_pq_psk hellochrome_120_pq`)

// TestFingerprints: every name Xray-core's links use is accepted by ParseVLESS, kept as
// given (so the link is written back unchanged), and stands for the closest browser we
// ship; the list has no name Xray lacks.
func TestFingerprints(t *testing.T) {
	base := "vless://" + testUUID + "@example.com:443?security=reality&sni=a.com&pbk=" + testPBK + "&fp="
	for _, fp := range xrayFingerprints {
		l, err := ParseVLESS(base + strings.ToUpper(fp))
		if err != nil || l.Fingerprint != fp {
			t.Errorf("ParseVLESS(fp=%s) = %+v, %v, want the link with fp %q", strings.ToUpper(fp), l, err, fp)
		}
	}
	if got, want := len(Fingerprints()), len(xrayFingerprints); got != want {
		t.Errorf("Fingerprints() has %d names, want Xray's %d", got, want)
	}
	for fp, want := range map[string]string{
		"": BrowserChrome, "chrome": BrowserChrome, "edge": BrowserChrome, "android": BrowserChrome,
		"360": BrowserChrome, "qq": BrowserChrome, "hellochrome_72": BrowserChrome, "helloandroid_11_okhttp": BrowserChrome,
		"firefox": BrowserFirefox, "hellofirefox_55": BrowserFirefox,
		"safari": BrowserSafari, "ios": BrowserSafari, "helloios_11_1": BrowserSafari,
		"random": BrowserRandom, "randomized": BrowserRandom, "randomizednoalpn": BrowserRandom, "hellorandomizedalpn": BrowserRandom,
	} {
		if got, err := FingerprintBrowser(fp); got != want || err != nil {
			t.Errorf("FingerprintBrowser(%q) = %q, %v, want %q", fp, got, err, want)
		}
	}
}

func TestFingerprintRefused(t *testing.T) {
	base := "vless://" + testUUID + "@example.com:443?security=reality&sni=a.com&pbk=" + testPBK + "&fp="
	for fp, want := range map[string]string{
		"chrome%20120": `link: fp: "chrome 120" is not a fingerprint name; want one of chrome, firefox, safari, ios, android, edge, 360, qq, random, randomized, randomizednoalpn, or Xray-core's hello360_11_0, `,
		"opera":        `link: fp: "opera" is not a fingerprint name; want one of chrome,`,
		"unsafe":       `link: fp: "unsafe" sends Go's own ClientHello`,
		"hellogolang":  `link: fp: "hellogolang" sends Go's own ClientHello`,
	} {
		_, err := ParseVLESS(base + fp)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseVLESS(fp=%s) error = %v, want one starting %q", fp, err, want)
		}
	}
}
