package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/panel"
	"github.com/burrow-vpn/burrow/internal/server"
)

// startPanel opens the --panel listener (and the in-tunnel one of
// --panel-tunnel) and returns them with the panel's handler, which changes
// users through local: the same path as the admin API, so a revocation
// cuts live connections at once.
func (f *sideFlags) startPanel(data string, cfg *server.Config, st *access.SQLiteStore, local *admin.Local, log *slog.Logger) ([]sideService, error) {
	pc := panel.Config{Users: local, Admins: st, Log: log,
		Links: func(ui *admin.UserInfo) ([]panel.Link, error) { return panelLinks(cfg, ui) }}
	pc.Hosts = splitList(f.panelHosts)
	if f.tunnel != nil {
		pc.Hosts = append(pc.Hosts, server.PanelHost)
	}
	p, err := panel.New(pc)
	if err != nil {
		return nil, err
	}
	var svcs []sideService
	if f.tunnel != nil {
		svcs = append(svcs, sideService{f.tunnel, p, "web panel served inside the tunnel", []any{"url", "http://" + server.PanelHost + "/"}})
	}
	if f.panel != "" {
		svc, err := f.panelFlags.listen(data, p, log, true)
		if err != nil {
			return nil, err
		}
		svcs = append(svcs, svc)
	}
	if admins, err := st.ListAdmins(context.Background()); err == nil && len(admins) == 0 {
		log.Info("the panel has no administrators yet: create one with `burrow admin add NAME --role owner --data " + data + "`")
	}
	return svcs, nil
}

// panelLinks are a user's tcp and xhttp links.
func panelLinks(cfg *server.Config, ui *admin.UserInfo) ([]panel.Link, error) {
	u, err := ui.User()
	if err != nil {
		return nil, err
	}
	tcp, err := userLink(cfg, u)
	if err != nil {
		return nil, fmt.Errorf("tcp link: %w", err)
	}
	xh, err := userXHTTPLink(cfg, u)
	if err != nil {
		return nil, fmt.Errorf("xhttp link: %w", err)
	}
	return []panel.Link{{Transport: "tcp", URL: tcp.String()}, {Transport: "xhttp", URL: xh.String()}}, nil
}
