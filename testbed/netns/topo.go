package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/p2pd/p2pd/testbed/scenario"
)

// Naming. Every namespace and interface a run creates is named
// "<prefix>-<id>" with a per-run prefix "p2t" + 6 random hex digits, so
// that parallel runs and leftovers never collide, and Cleanup finds them:
//
//	<prefix>-hub   the hub namespace, holding the bridge <prefix>-br and
//	               the bridge-side veth end <prefix>-<id>b of every host
//	<prefix>-<id>  a host's namespace (id "t" the tracker, "o0".. the
//	               origins, "p0".. the peers), holding its veth end
//	               <prefix>-<id>
//
// The longest interface name, "p2t1a2b3c-p63b", is 14 characters (Linux
// allows 15). Nothing is created in the root namespace: the bridge lives
// in the hub, and the testbed reaches the hosts' TCP listeners by
// entering their namespaces (see dialer) and the peers' control APIs over
// unix sockets. Addresses come from a private /16 (pickSubnet), one per
// host from .0.2 up; MAC addresses are made from them (host.mac).
const (
	// PrefixBase starts every run's prefix.
	PrefixBase = "p2t"
	hubID      = "hub"
	bridgeID   = "br"
)

// prefixRE matches a run's prefix; Cleanup refuses anything shorter than
// PrefixBase so that it never deletes namespaces that are not ours.
var prefixRE = regexp.MustCompile(`^p2t[0-9a-f]{0,6}$`)

// newPrefix returns a fresh run prefix.
func newPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return PrefixBase + hex.EncodeToString(b[:])
}

// subnets are the private /16s a run may use, in order of preference. A
// run's addresses only exist inside its own namespaces, so they cannot
// clash with the host's; a subnet that the root namespace routes is
// skipped all the same, so that a reader of `ip route` is never confused.
var subnets = []netip.Prefix{
	netip.MustParsePrefix("10.213.0.0/16"),
	netip.MustParsePrefix("10.214.0.0/16"),
	netip.MustParsePrefix("10.215.0.0/16"),
	netip.MustParsePrefix("172.29.0.0/16"),
}

// Shaping with tc tbf. A host's upload is a tbf qdisc on its own veth end
// (egress from the host); its download a tbf on the bridge-side end
// (egress from the bridge towards the host). tbf counts whole frames
// (Ethernet, IP and TCP headers included: about 4.5% above the TCP
// payload at a 1500-byte MTU), so a netns link carries slightly less
// payload than an emulated link of the same rate, which shapes the bytes
// of the TCP stream (TestShapedLink measures 97% of the rate in payload).
//
// Burst is the bucket depth: 10 ms at the rate, at least 64 KiB, the same
// as the emulated links' token buckets (internal/shape), and never less
// than a GSO super-packet (64 KiB), which tbf would otherwise have to
// split. Limit is the queue behind the bucket: the burst plus 50 ms at the
// rate, at least 256 KiB more, enough that TCP keeps the link busy (with
// no added latency the bandwidth-delay product is tiny) without hundreds
// of milliseconds of queueing.
const (
	minBurst   = 64 << 10
	burstTime  = 10 * time.Millisecond
	queueTime  = 50 * time.Millisecond
	minQueue   = 256 << 10
	tbfMaxRate = 1 << 40 // bytes/s; tc takes 64-bit rates
	cmdTimeout = 30 * time.Second
)

// tbf is one direction's shaping.
type tbf struct {
	Rate  int64 // bytes/s
	Burst int64 // bytes
	Limit int64 // bytes
}

// tbfFor returns the qdisc for rate bytes/s; ok is false for an unlimited
// (zero) rate.
func tbfFor(rate int64) (q tbf, ok bool) {
	if rate <= 0 {
		return tbf{}, false
	}
	rate = min(rate, tbfMaxRate)
	burst := max(rate/int64(time.Second/burstTime), minBurst)
	queue := max(rate/int64(time.Second/queueTime), minQueue)
	return tbf{Rate: rate, Burst: burst, Limit: burst + queue}, true
}

// args are tc's words for q.
func (q tbf) args() string {
	return fmt.Sprintf("tbf rate %dbit burst %d limit %d", q.Rate*8, q.Burst, q.Limit)
}

// host is one namespace of the run.
type host struct {
	id   string // "t", "o0", "p3"
	ns   string // its namespace
	addr netip.Addr
	link scenario.Link // zero: unshaped (the tracker)
}

// mac is the host's MAC address, locally administered and made of its
// IPv4 address, so that every host can be told every other's in advance.
func (h *host) mac() string {
	a := h.addr.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// veth returns the names of the host's veth ends: in the host namespace,
// and in the hub.
func (h *host) veth() (inHost, inHub string) { return h.ns, h.ns + "b" }

// topo is a run's network: a hub namespace with a bridge, and one
// namespace per host connected to it by a shaped veth pair.
type topo struct {
	prefix string
	hub    string
	net    netip.Prefix
	hosts  []*host
	made   []string // namespaces created, hub first
}

// ipCmd runs a command (ip or tc) with its stdin, and returns an error
// carrying its output if it fails.
func ipCmd(ctx context.Context, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Available reports why netns mode cannot run on this machine: it needs
// root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip and tc commands.
func Available() error {
	if syscall.Geteuid() != 0 {
		return errors.New("netns mode needs root (namespaces, veth pairs and tc qdiscs)")
	}
	for _, c := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("netns mode needs the %s command (iproute2): %w", c, err)
		}
	}
	return nil
}

// pickSubnet returns the first of subnets that no route of the root
// namespace overlaps.
func pickSubnet(ctx context.Context) (netip.Prefix, error) {
	out, err := exec.CommandContext(ctx, "ip", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip route: %w", err)
	}
	var routes []netip.Prefix
	for l := range strings.Lines(string(out)) {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unicast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Addr().Is4() {
			routes = append(routes, p)
		}
	}
next:
	for _, s := range subnets {
		for _, r := range routes {
			if r.Bits() > 0 && r.Overlaps(s) {
				continue next
			}
		}
		return s, nil
	}
	return netip.Prefix{}, errors.New("every candidate subnet is routed on this host")
}

// newTopo lays out the hosts (the tracker, the origins, then the peers)
// and creates their network. On error, whatever was created is removed.
func newTopo(ctx context.Context, s scenario.Scenario, peers []scenario.Peer) (t *topo, err error) {
	sub, err := pickSubnet(ctx)
	if err != nil {
		return nil, err
	}
	t = &topo{prefix: newPrefix(), net: sub}
	t.hub = t.name(hubID)
	ip := sub.Addr().Next() // .0.1 is left free
	add := func(id string, l scenario.Link) {
		ip = ip.Next()
		t.hosts = append(t.hosts, &host{id: id, ns: t.name(id), addr: ip, link: l})
	}
	add("t", scenario.Link{})
	for i := range s.Origins.Count {
		add(fmt.Sprintf("o%d", i), s.Origins.Link)
	}
	for _, p := range peers {
		add(fmt.Sprintf("p%d", p.Index), p.Link)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.teardown())
			t = nil
		}
	}()
	return t, t.create(ctx)
}

func (t *topo) name(id string) string { return t.prefix + "-" + id }

// create makes the namespaces, the bridge, the veth pairs, the addresses
// and the qdiscs, with one ip (or tc) process per namespace in batch mode.
//
// Every host knows every other's MAC address from the start (permanent
// neighbour entries), so no ARP is needed. This is not an optimisation:
// the kernel's ARP table is one for all namespaces, and its dynamic
// entries are capped by net.ipv4.neigh.default.gc_thresh3 (1024 by
// default, settable only in the root namespace). 65 hosts that all talk
// to each other need about 4,000 entries; past the cap, resolution fails
// ("neighbor table overflow") and SYNs are dropped. Permanent entries do
// not count against the cap (Linux ≥ 5.0).
func (t *topo) create(ctx context.Context) error {
	var b strings.Builder
	fmt.Fprintf(&b, "netns add %s\n", t.hub)
	for _, h := range t.hosts {
		fmt.Fprintf(&b, "netns add %s\n", h.ns)
	}
	// Recorded before the batch runs: a failed batch may have made some.
	t.made = append(t.made, t.hub)
	for _, h := range t.hosts {
		t.made = append(t.made, h.ns)
	}
	if err := ipCmd(ctx, b.String(), "ip", "-batch", "-"); err != nil {
		return err
	}

	br := t.name(bridgeID)
	b.Reset()
	fmt.Fprintf(&b, "link set lo up\nlink add %s type bridge\nlink set %s up\n", br, br)
	for _, h := range t.hosts {
		inHost, inHub := h.veth()
		fmt.Fprintf(&b, "link add %s type veth peer name %s netns %s\n", inHub, inHost, h.ns)
		fmt.Fprintf(&b, "link set %s master %s\nlink set %s up\n", inHub, br, inHub)
	}
	if err := ipCmd(ctx, b.String(), "ip", "-n", t.hub, "-batch", "-"); err != nil {
		return err
	}

	var hubTC strings.Builder
	for _, h := range t.hosts {
		inHost, inHub := h.veth()
		b.Reset()
		fmt.Fprintf(&b, "link set lo up\nlink set %s address %s\naddr add %s/%d dev %s\nlink set %s up\n",
			inHost, h.mac(), h.addr, t.net.Bits(), inHost, inHost)
		for _, o := range t.hosts {
			if o != h {
				fmt.Fprintf(&b, "neigh replace %s lladdr %s dev %s nud permanent\n", o.addr, o.mac(), inHost)
			}
		}
		if err := ipCmd(ctx, b.String(), "ip", "-n", h.ns, "-batch", "-"); err != nil {
			return err
		}
		if q, ok := tbfFor(int64(h.link.Up)); ok {
			if err := ipCmd(ctx, "", "tc", append([]string{"-n", h.ns, "qdisc", "add", "dev", inHost, "root"}, strings.Fields(q.args())...)...); err != nil {
				return err
			}
		}
		if q, ok := tbfFor(int64(h.link.Down)); ok {
			fmt.Fprintf(&hubTC, "qdisc add dev %s root %s\n", inHub, q.args())
		}
	}
	if hubTC.Len() > 0 {
		if err := ipCmd(ctx, hubTC.String(), "tc", "-n", t.hub, "-batch", "-"); err != nil {
			return err
		}
	}
	return nil
}

// teardown deletes every namespace the run made (which deletes their veth
// ends, and with the hub the bridge). Processes must have been stopped
// first: a namespace lives on while a process is in it.
func (t *topo) teardown() error {
	if len(t.made) == 0 {
		return nil
	}
	var b strings.Builder
	for _, ns := range t.made {
		fmt.Fprintf(&b, "netns del %s\n", ns)
	}
	// -force: go on past a namespace that is already gone (after a
	// failed create); what counts is that none is left.
	err := ipCmd(context.Background(), b.String(), "ip", "-force", "-batch", "-")
	left, lerr := namespaces(t.prefix + "-")
	switch {
	case lerr != nil:
		return errors.Join(err, lerr)
	case len(left) > 0:
		return errors.Join(err, fmt.Errorf("namespaces left after teardown: %v", left))
	}
	t.made = nil
	return nil
}

// namespaces lists the network namespaces whose names start with prefix.
func namespaces(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for l := range strings.Lines(string(out)) {
		f := strings.Fields(l)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// links lists the interfaces of the root namespace whose names start with
// prefix (a run makes none there; Cleanup checks all the same).
func links(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip link: %w", err)
	}
	var names []string
	for l := range strings.Lines(string(out)) {
		// "7: name@peer: <...> ..."
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names, nil
}

// Cleanup removes what runs left behind under prefix (PrefixBase for
// every run's, or one run's "p2t1a2b3c"): it kills every process inside
// those namespaces, deletes the namespaces (and so their veth pairs and
// bridges) and any root-namespace link whose name starts with prefix.
// scripts/netns-clean.sh does the same from a shell. It must not be used
// with PrefixBase while a run is going on: it would tear that run down.
func Cleanup(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("netns: cleanup prefix %q: want %s followed by up to 6 hex digits", prefix, PrefixBase)
	}
	names, err := namespaces(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("ip netns pids %s: %w", ns, err))
		}
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var b strings.Builder
	for _, ns := range names {
		fmt.Fprintf(&b, "netns del %s\n", ns)
	}
	if b.Len() > 0 {
		errs = append(errs, ipCmd(context.Background(), b.String(), "ip", "-force", "-batch", "-"))
	}
	ls, err := links(prefix)
	errs = append(errs, err)
	for _, l := range ls {
		errs = append(errs, ipCmd(context.Background(), "", "ip", "link", "del", l))
	}
	return errors.Join(errs...)
}
