package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// debPackage is what goes into burrow_VERSION_ARCH.deb.
type debPackage struct {
	Version string // Debian version, e.g. 1.2.0
	Arch    string // Debian architecture: amd64, arm64
	Binary  []byte // installed as /usr/bin/burrow
	Unit    []byte // installed as /lib/systemd/system/burrow.service
}

var debVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)

// The package creates the burrow system user and its data directory, and
// ships the unit disabled: the server needs `burrow server init` before it
// can start, and `burrow server install` then enables it.
const postinst = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
	if ! getent passwd burrow >/dev/null; then
		if command -v adduser >/dev/null; then
			adduser --system --group --home /var/lib/burrow --no-create-home --shell /usr/sbin/nologin --gecos "Burrow VPN server" burrow
		else
			useradd --system --user-group --home-dir /var/lib/burrow --no-create-home --shell /usr/sbin/nologin --comment "Burrow VPN server" burrow
		fi
	fi
	if [ ! -d /var/lib/burrow ]; then
		install -d -m 0700 -o burrow -g burrow /var/lib/burrow
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		if systemctl is-active --quiet burrow.service; then
			systemctl restart burrow.service || true
		fi
	fi
	if [ ! -e /var/lib/burrow/config.json ]; then
		echo "burrow: set the server up with: sudo burrow server init --cover HOST:443 && sudo burrow server install"
	fi
fi
`

const prerm = `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl disable --now burrow.service >/dev/null 2>&1 || true
fi
`

const postrm = `#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
`

func (p debPackage) control() string {
	size := (len(p.Binary) + len(p.Unit) + 1023) / 1024
	return fmt.Sprintf(`Package: burrow
Version: %s
Architecture: %s
Maintainer: Burrow developers <burrow@users.noreply.github.com>
Installed-Size: %d
Depends: adduser | passwd
Section: net
Priority: optional
Homepage: https://github.com/burrow-vpn/burrow
Description: censorship-resistant VPN (VLESS + REALITY + Vision)
 Burrow's single binary: the camouflaged exit server, its user
 administration, and the client. The server runs as the burrow user under
 the shipped systemd unit once set up with burrow server init.
`, p.Version, p.Arch, size)
}

func writeDeb(w io.Writer, p debPackage, mtime time.Time) error {
	if !debVersion.MatchString(p.Version) {
		return fmt.Errorf("deb: version %q is not a Debian version", p.Version)
	}
	if p.Arch != "amd64" && p.Arch != "arm64" {
		return fmt.Errorf("deb: architecture %q: want amd64 or arm64", p.Arch)
	}
	control := []entry{
		{Name: "./", Mode: 0o755},
		{Name: "./control", Mode: 0o644, Data: []byte(p.control())},
		{Name: "./postinst", Mode: 0o755, Data: []byte(postinst)},
		{Name: "./prerm", Mode: 0o755, Data: []byte(prerm)},
		{Name: "./postrm", Mode: 0o755, Data: []byte(postrm)},
	}
	data := []entry{
		{Name: "./", Mode: 0o755},
		{Name: "./lib/", Mode: 0o755},
		{Name: "./lib/systemd/", Mode: 0o755},
		{Name: "./lib/systemd/system/", Mode: 0o755},
		{Name: "./lib/systemd/system/burrow.service", Mode: 0o644, Data: p.Unit},
		{Name: "./usr/", Mode: 0o755},
		{Name: "./usr/bin/", Mode: 0o755},
		{Name: "./usr/bin/burrow", Mode: 0o755, Data: p.Binary},
	}
	sortEntries(control)
	sortEntries(data)
	var ctl, dat bytes.Buffer
	if err := writeTarGz(&ctl, control, mtime); err != nil {
		return fmt.Errorf("deb: control: %w", err)
	}
	if err := writeTarGz(&dat, data, mtime); err != nil {
		return fmt.Errorf("deb: data: %w", err)
	}
	return writeAr(w, mtime, []arMember{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", ctl.Bytes()},
		{"data.tar.gz", dat.Bytes()},
	})
}

type arMember struct {
	Name string
	Data []byte
}

// writeAr writes a common-format ar archive, as dpkg-deb does: 60-byte
// headers, root-owned members of mode 0644, each padded to even length.
func writeAr(w io.Writer, mtime time.Time, ms []arMember) error {
	var b bytes.Buffer
	b.WriteString("!<arch>\n")
	for _, m := range ms {
		if len(m.Name) > 15 || strings.Contains(m.Name, "/") {
			return fmt.Errorf("ar: member name %q too long", m.Name)
		}
		fmt.Fprintf(&b, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.Name, mtime.Unix(), 0, 0, 0o100644, len(m.Data))
		b.Write(m.Data)
		if len(m.Data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
