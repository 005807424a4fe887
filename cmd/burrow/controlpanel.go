package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/burrow-vpn/burrow/internal/admin"
	"github.com/burrow-vpn/burrow/internal/control"
	"github.com/burrow-vpn/burrow/internal/panel"
)

// startFleetPanel opens --panel for a fleet: the control plane's users
// (changed through local, so every change reaches the nodes through the
// change log), its administrators, every node on the server page, and each
// user's links for every exit and relay path.
func (f *panelFlags) startFleetPanel(data string, st *control.SQLStore, local *admin.Local, log *slog.Logger) (sideService, error) {
	p, err := panel.New(panel.Config{Users: local, Admins: st, Log: log, Hosts: splitList(f.panelHosts),
		Links: func(ui *admin.UserInfo) ([]panel.Link, error) { return fleetPanelLinks(st, ui) },
		Nodes: func(ctx context.Context) ([]panel.Node, error) { return fleetPanelNodes(ctx, st) }})
	if err != nil {
		return sideService{}, err
	}
	svc, err := f.listen(data, p, log, false)
	if err != nil {
		return sideService{}, err
	}
	if admins, err := st.ListAdmins(context.Background()); err == nil && len(admins) == 0 {
		log.Info("the panel has no administrators yet: create one with `burrow admin add NAME --role owner --data " + data + "`")
	}
	return svc, nil
}

// fleetPanelLinks are a user's links, one per live exit and relay path,
// labelled "exit-1" or "relay-1 > exit-1".
func fleetPanelLinks(st control.Store, ui *admin.UserInfo) ([]panel.Link, error) {
	u, err := ui.User()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := st.RelayPaths(ctx)
	if err != nil {
		return nil, err
	}
	uls, err := control.UserLinks(u, nodes, paths, nil)
	if err != nil {
		return nil, err
	}
	out := make([]panel.Link, len(uls))
	for i := range uls {
		out[i] = panel.Link{Transport: uls[i].Label(), URL: uls[i].Link.String()}
	}
	return out, nil
}

// fleetPanelNodes lists the fleet's nodes with how far each one's replica
// was behind the change log at its last report.
func fleetPanelNodes(ctx context.Context, st control.Store) ([]panel.Node, error) {
	head, err := st.Version(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]panel.Node, len(nodes))
	for i, n := range nodes {
		s := n.Status
		out[i] = panel.Node{Name: n.Name, Role: string(n.Role), Revoked: n.Revoked, Version: s.Version, LastSeen: s.LastSeen,
			Online: s.UsersOnline, BytesUp: s.BytesUp, BytesDown: s.BytesDown, Health: s.Health}
		if !s.LastSeen.IsZero() {
			out[i].Lag = max(head-s.AppliedVersion, 0)
		}
	}
	return out, nil
}
