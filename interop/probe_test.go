package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
	"time"
)

// TestProbeSeesCover: a censor's prober opens TLS 1.3 with the cover's SNI and
// no REALITY authenticator. Through Xray's server and through burrow's it must
// get the cover's own certificate and page, byte for byte, exactly as when it
// visits the cover directly.
func TestProbeSeesCover(t *testing.T) {
	cover := startCover(t)
	check := func(t *testing.T, addr string) {
		t.Helper()
		leaf, body := probeTLS(t, addr, coverSNI)
		if !bytes.Equal(leaf, cover.CertDER) {
			t.Errorf("probe %s: certificate sha256 = %s, want the cover's %s", addr, certSum(leaf), certSum(cover.CertDER))
		}
		if body != coverPage {
			t.Errorf("probe %s: body = %q, want the cover page %q", addr, body, coverPage)
		}
	}

	t.Run("cover", func(t *testing.T) {
		check(t, cover.Addr) // the control: the prober works at all
	})
	t.Run("xray", func(t *testing.T) {
		keys := newRealityKeys(t)
		srv := xrayServer{
			Port:       freePort(t),
			UUID:       newUUID(t),
			PrivateKey: keys.Private,
			ShortID:    newShortID(t),
			Target:     cover.Addr,
			SNI:        coverSNI,
		}
		startXray(t, xrayServerConfig(t, srv))
		addr := "127.0.0.1:" + strconv.Itoa(srv.Port)
		waitTCP(t, addr, 5*time.Second)
		check(t, addr)
	})
	t.Run("burrow", func(t *testing.T) {
		bs := startBurrowServer(t, cover.Addr)
		check(t, bs.Addr)
	})
}

func certSum(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:8])
}
