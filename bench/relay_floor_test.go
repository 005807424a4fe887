package bench

// relay_floor_test.go measures, on this machine, the least an entry relay
// can cost per byte: what it cannot avoid doing to each byte of a download
// is to decrypt the leg's TLS (AES-GCM open) and to move the byte across
// one more loopback TCP hop (the exit writes it to the leg, the relay reads
// it, and the relay writes it to the client, who reads it: the direct path
// has one hop fewer and one AES-GCM seal fewer at the exit). Compare these
// figures with BenchmarkRelayCPU's relay-cpu-ns/B and
// exit-relayed-cpu-ns/B minus exit-cpu-ns/B. Run:
//
//	go test -run XXX -bench RelayFloor ./bench/

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"io"
	"net"
	"strconv"
	"testing"
)

func BenchmarkRelayFloor(b *testing.B) {
	const record = 16 << 10
	key := make([]byte, 16)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	plain := make([]byte, record)
	sealed := aead.Seal(nil, nonce, plain, nil)
	b.Run("aes-128-gcm-seal", func(b *testing.B) {
		out := make([]byte, 0, len(sealed))
		b.SetBytes(record)
		cpu0 := cpuTime(b)
		for b.Loop() {
			out = aead.Seal(out[:0], nonce, plain, nil)
		}
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(int64(b.N)*record), "cpu-ns/B")
	})
	b.Run("aes-128-gcm-open", func(b *testing.B) {
		out := make([]byte, 0, record)
		b.SetBytes(record)
		cpu0 := cpuTime(b)
		for b.Loop() {
			if out, err = aead.Open(out[:0], nonce, sealed, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(int64(b.N)*record), "cpu-ns/B")
	})
	// One loopback hop, both ends: writes of the given size, reads of 64 KiB.
	for _, size := range []int{16 << 10, 64 << 10} {
		b.Run("loopback-hop/write="+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			const total = 256 << 20
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						if err == io.EOF {
							err = nil
						}
						done <- err
						return
					}
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, size)
			b.SetBytes(total)
			cpu0 := cpuTime(b)
			for b.Loop() {
				for range total / size {
					if _, err := c.Write(chunk); err != nil {
						b.Fatal(err)
					}
				}
			}
			c.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(int64(b.N)*total), "cpu-ns/B")
		})
	}
}
