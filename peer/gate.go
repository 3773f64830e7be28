package peer

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// inboundGate refuses an inbound connection before its TLS handshake once
// the host has Config.MaxInbound inbound connections. The engine also
// refuses a session over the cap, but only once the peer opens its
// stream: by then the host's link has carried the TLS handshake, its
// certificate and libp2p's identify exchange, 2.7 KB from an emulated
// origin (docs/benchmarks.md, "Session 7"), a tenth of a second of a
// 0.25 Mbit/s link for each of the hundreds of peers a flash crowd sends
// to it ("Session 9").
type inboundGate struct {
	max int

	mu   sync.Mutex
	open int // inbound connections up
	// pending are the times of connections accepted whose handshake has
	// not finished, oldest first: a flash crowd's dials arrive together,
	// long before the first handshake ends, and all of them would pass a
	// count of finished ones. A handshake that fails leaves no trace but
	// its entry, which expires after handshakeWindow.
	pending []time.Time
}

// handshakeWindow is how long an accepted connection counts against the
// cap before its handshake ends: libp2p's upgrader gives up on it after
// 15 s.
const handshakeWindow = 15 * time.Second

var _ connmgr.ConnectionGater = (*inboundGate)(nil)

func newInboundGate(max int) *inboundGate { return &inboundGate{max: max} }

// InterceptAccept refuses the connection, before any byte of the
// handshake, when the inbound cap is reached.
func (g *inboundGate) InterceptAccept(network.ConnMultiaddrs) bool {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	k := 0
	for k < len(g.pending) && now.Sub(g.pending[k]) > handshakeWindow {
		k++
	}
	g.pending = g.pending[k:]
	if g.open+len(g.pending) >= g.max {
		return false
	}
	g.pending = append(g.pending, now)
	return true
}

func (g *inboundGate) InterceptPeerDial(lpeer.ID) bool               { return true }
func (g *inboundGate) InterceptAddrDial(lpeer.ID, ma.Multiaddr) bool { return true }
func (g *inboundGate) InterceptSecured(network.Direction, lpeer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *inboundGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// notifiee counts the host's inbound connections for the gate; one that
// comes up takes the place of the oldest pending accept.
func (g *inboundGate) notifiee() network.Notifiee {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.Stat().Direction != network.DirInbound {
				return
			}
			g.mu.Lock()
			g.open++
			if len(g.pending) > 0 {
				g.pending = g.pending[1:]
			}
			g.mu.Unlock()
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if c.Stat().Direction != network.DirInbound {
				return
			}
			g.mu.Lock()
			g.open--
			g.mu.Unlock()
		},
	}
}
