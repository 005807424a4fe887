package tun

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// LinuxDevice is a kernel TUN interface opened through /dev/net/tun.
type LinuxDevice struct {
	f    *os.File
	name string
	mtu  int
}

// Open creates the TUN interface name (IFF_TUN, no packet information) and
// returns it; the interface is deleted when the device is closed. Errors say
// in plain words what is missing: root, the tun module, or the name.
func Open(name string, mtu int) (*LinuxDevice, error) {
	if len(name) >= unix.IFNAMSIZ || name == "" {
		return nil, fmt.Errorf("tun: interface name %q: want 1 to %d characters", name, unix.IFNAMSIZ-1)
	}
	// By netlink, not /sys/class/net: a process that entered a namespace
	// by setns still sees the machine's sysfs.
	if _, err := net.InterfaceByName(name); err == nil {
		return nil, fmt.Errorf("tun: an interface named %s already exists (another VPN, or a burrow that did not exit); pick another with --tun-name", name)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return nil, errors.New("tun: TUN is unavailable on this machine: /dev/net/tun is missing (load the tun kernel module, or in a container add --device /dev/net/tun)")
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, errors.New("tun: --tun needs root (or CAP_NET_ADMIN) to open /dev/net/tun; run with sudo")
		}
		return nil, fmt.Errorf("tun: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: interface name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, errors.New("tun: --tun needs root (or CAP_NET_ADMIN) to create a TUN interface; run with sudo")
		}
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("tun: interface %s is in use by another program; pick another with --tun-name", name)
		}
		return nil, fmt.Errorf("tun: create interface %s: %w", name, err)
	}
	if err := setMTU(name, mtu); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking so the runtime poller owns it and Close unblocks Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: %w", err)
	}
	return &LinuxDevice{f: os.NewFile(uintptr(fd), "/dev/net/tun"), name: name, mtu: mtu}, nil
}

func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tun: set mtu: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tun: set mtu: %w", err)
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("tun: set mtu %d on %s: %w", mtu, name, err)
	}
	return nil
}

func (d *LinuxDevice) Read(p []byte) (int, error)  { return d.f.Read(p) }
func (d *LinuxDevice) Write(p []byte) (int, error) { return d.f.Write(p) }
func (d *LinuxDevice) MTU() int                    { return d.mtu }
func (d *LinuxDevice) Name() string                { return d.name }
func (d *LinuxDevice) Close() error                { return d.f.Close() }
