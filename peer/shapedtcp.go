package peer

import (
	"context"
	"fmt"
	"net"

	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	ma "github.com/multiformats/go-multiaddr"
	mafmt "github.com/multiformats/go-multiaddr-fmt"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pd/p2pd/internal/shape"
)

// shapedTCP is a plain TCP transport whose connections, dialled and
// accepted, go through a shape.Link before libp2p upgrades them (TLS,
// yamux): a host-wide cap on upload and download (Config.HostUploadRate,
// HostDownloadRate) or, in the testbed, an emulated link.
type shapedTCP struct {
	upgrader transport.Upgrader
	rcmgr    network.ResourceManager
	link     *shape.Link
}

var _ transport.Transport = (*shapedTCP)(nil)

// newShapedTCP returns a libp2p transport constructor for link.
func newShapedTCP(link *shape.Link) func(transport.Upgrader, network.ResourceManager) (*shapedTCP, error) {
	return func(u transport.Upgrader, rm network.ResourceManager) (*shapedTCP, error) {
		if rm == nil {
			rm = &network.NullResourceManager{}
		}
		return &shapedTCP{upgrader: u, rcmgr: rm, link: link}, nil
	}
}

var tcpMatcher = mafmt.And(mafmt.IP, mafmt.Base(ma.P_TCP))

func (t *shapedTCP) CanDial(addr ma.Multiaddr) bool { return tcpMatcher.Matches(addr) }
func (t *shapedTCP) Protocols() []int               { return []int{ma.P_TCP} }
func (t *shapedTCP) Proxy() bool                    { return false }

func (t *shapedTCP) Dial(ctx context.Context, raddr ma.Multiaddr, p lpeer.ID) (transport.CapableConn, error) {
	scope, err := t.rcmgr.OpenConnection(network.DirOutbound, true, raddr)
	if err != nil {
		return nil, err
	}
	if err := scope.SetPeer(p); err != nil {
		scope.Done()
		return nil, err
	}
	var d manet.Dialer
	c, err := d.DialContext(ctx, raddr)
	if err != nil {
		scope.Done()
		return nil, err
	}
	return t.upgrader.Upgrade(ctx, t, t.wrap(c), network.DirOutbound, p, scope) // Upgrade ends scope on failure
}

func (t *shapedTCP) Listen(laddr ma.Multiaddr) (transport.Listener, error) {
	l, err := manet.Listen(laddr)
	if err != nil {
		return nil, fmt.Errorf("peer: shaped tcp listen: %w", err)
	}
	return t.upgrader.UpgradeGatedMaListener(t, t.upgrader.GateMaListener(&shapedListener{Listener: l, t: t})), nil
}

func (t *shapedTCP) wrap(c manet.Conn) manet.Conn {
	return &shapedConn{Conn: t.link.Wrap(c), laddr: c.LocalMultiaddr(), raddr: c.RemoteMultiaddr()}
}

type shapedListener struct {
	manet.Listener
	t *shapedTCP
}

func (l *shapedListener) Accept() (manet.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.t.wrap(c), nil
}

// shapedConn is a shaped net.Conn with the multiaddrs libp2p wants.
type shapedConn struct {
	net.Conn
	laddr, raddr ma.Multiaddr
}

func (c *shapedConn) LocalMultiaddr() ma.Multiaddr  { return c.laddr }
func (c *shapedConn) RemoteMultiaddr() ma.Multiaddr { return c.raddr }
