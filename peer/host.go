package peer

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
)

// TransportOptions returns the transport stack every p2pd host uses: TCP,
// TLS 1.3 and yamux, plus QUIC if enableQUIC is set. Nothing else: no
// Noise, no WebSocket, no WebRTC.
//
// TCP dials from ephemeral ports rather than the listen port
// (DisableReuseport). Reusing the listen port only helps NAT hole
// punching, which p2pd does not do, and it breaks the common case of two
// peers that the tracker hands to each other dialling at the same moment:
// both connections get the same address pair, TCP merges them into one
// (a simultaneous open), and the TLS handshake fails because both ends
// act as the client.
//
// With a link, TCP connections go through it (shapedTCP).
func TransportOptions(enableQUIC bool, link *shape.Link) libp2p.Option {
	tcpOpt := libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport())
	if link != nil {
		tcpOpt = libp2p.Transport(newShapedTCP(link))
	}
	opts := []libp2p.Option{
		tcpOpt,
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	}
	if enableQUIC {
		opts = append(opts, libp2p.Transport(libp2pquic.NewTransport))
	}
	return libp2p.ChainOptions(opts...)
}

// NewHost builds the libp2p host an Engine runs on, from cfg's
// ListenAddrs, EnableQUIC and PSK (a private network), with identity key: TransportOptions, the
// resource manager with ResourceLimits, and none of libp2p's discovery or
// relaying (no mDNS, no DHT, no relay, no NAT port mapping, no libp2p
// metrics on the global Prometheus registry). The caller owns the host and
// closes it. testbed/transferbench uses it to measure raw streams on the same stack.
// link, if not nil, shapes its TCP connections.
func NewHost(cfg Config, key crypto.PrivKey, link *shape.Link) (host.Host, error) {
	cfg = cfg.WithDefaults()
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(ResourceLimits()))
	if err != nil {
		return nil, fmt.Errorf("peer: resource manager: %w", err)
	}
	var pnetOpt libp2p.Option = func(*libp2p.Config) error { return nil }
	if len(cfg.PSK) > 0 {
		pnetOpt = libp2p.PrivateNetwork(cfg.PSK)
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		pnetOpt,
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		TransportOptions(cfg.EnableQUIC, link),
		libp2p.ResourceManager(mgr),
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.Ping(false),
		libp2p.UserAgent("p2pd"),
	)
	if err != nil {
		mgr.Close()
		return nil, fmt.Errorf("peer: libp2p host: %w", err)
	}
	return h, nil
}

// ResourceLimits returns the libp2p resource manager limits of an Engine's
// host: libp2p's defaults scaled to the machine, plus limits for the chunk
// protocol. Each peer pair needs one chunk stream; a few are allowed per
// peer so that a reconnect can overlap the stream it replaces, and the
// memory bound per peer lets yamux grow its receive window to 16 MiB.
func ResourceLimits() rcmgr.ConcreteLimitConfig {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	proto := protocol.ID(peerwire.ProtocolID)
	limits.AddProtocolLimit(proto,
		rcmgr.BaseLimit{StreamsInbound: 1024, StreamsOutbound: 256, Streams: 1280, Memory: 512 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 256, StreamsOutbound: 64, Streams: 320, Memory: 256 << 20},
	)
	limits.AddProtocolPeerLimit(proto,
		rcmgr.BaseLimit{StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 32 << 20},
		rcmgr.BaseLimitIncrease{},
	)
	return limits.AutoScale()
}
