//go:build !linux

package tun

import (
	"errors"
	"log/slog"
	"runtime"
)

// ErrRunning: see system_linux.go.
var ErrRunning = errors.New("tun: another burrow is running")

var errUnsupported = errors.New("tun: full-device mode (--tun) is not supported on " + runtime.GOOS + " yet (Linux only so far); use the SOCKS5 or HTTP proxy")

// Defaults for NetConfig (see system_linux.go).
const (
	DefaultName  = "burrow0"
	DefaultMTU   = 9000
	DefaultTable = 0x4255
	DefaultMark  = 0x4255
)

// LinuxDevice is unavailable on this system.
type LinuxDevice struct{ ChannelDevice }

// NetConfig is unused on this system.
type NetConfig struct {
	Device, ResolvConf, StateFile string
	Table                         int
	Mark                          uint32
	KillSwitch                    bool
	Logger                        *slog.Logger
}

func Open(name string, mtu int) (*LinuxDevice, error)    { return nil, errUnsupported }
func Setup(cfg NetConfig) (undo func() error, err error) { return nil, errUnsupported }
func Restore(stateFile string) error                     { return nil }
func StateFile(device string) (string, error)            { return "", errUnsupported }
