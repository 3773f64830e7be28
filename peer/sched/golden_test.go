package sched

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// The golden tests replay testdata/*.txt, in the style of etcd-raft's
// datadriven tests. A script is a sequence of blocks:
//
//	# comments and blank lines
//	command args...
//	[more commands...]
//	----
//	expected output, one action per line
//	<blank line>
//
// The output of a block is the actions of all its commands, in order.
// `go test -run TestGolden -update` rewrites the expected output.
//
// Commands (t=DUR on any command first moves the virtual clock to DUR after
// the start; it must not go back):
//
//	new chunks=N [have=LIST] [seed=S] [depth=D] [origin-depth=D] [timeout=DUR] [endgame=E]
//	    [dups=M] [ban=B] [origin-after=K] [backoff=DUR] [max-backoff=DUR]
//	    [origin-backoff=DUR] [max-origin-backoff=DUR] [policy=fallback|peer]
//	connect ID [origin] [have=LIST]      LIST: 0,2,5-9 | all | none
//	disconnect ID
//	have ID IDX
//	data ID IDX                          part of chunk IDX arrived from ID (ChunkProgress)
//	bitfield ID have=LIST
//	received ID IDX ok|bad
//	fail ID IDX busy|notfound|error
//	tick
//	stored IDX
//	progress | stats ID | avail | inflight | next    (print state, no event)
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txt scripts")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScript(t, f)
		})
	}
}

type block struct {
	pre  []string // comment and blank lines before the commands
	cmds []string
	want []string
	line int // of the first command
}

func parseScript(data string) (blocks []block, trailer []string, err error) {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	var cur block
	inWant := false
	for n, l := range lines {
		switch {
		case inWant && l == "":
			blocks = append(blocks, cur)
			cur, inWant = block{}, false
		case inWant:
			cur.want = append(cur.want, l)
		case l == "----":
			if len(cur.cmds) == 0 {
				return nil, nil, fmt.Errorf("line %d: ---- without a command", n+1)
			}
			inWant = true
		case len(cur.cmds) == 0 && (strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#")):
			cur.pre = append(cur.pre, l)
		default:
			if len(cur.cmds) == 0 {
				cur.line = n + 1
			}
			cur.cmds = append(cur.cmds, l)
		}
	}
	if inWant {
		blocks = append(blocks, cur)
	} else if len(cur.cmds) > 0 {
		return nil, nil, fmt.Errorf("line %d: commands without ----", cur.line)
	} else {
		trailer = cur.pre
	}
	return blocks, trailer, nil
}

func renderScript(blocks []block, trailer []string) string {
	var sb strings.Builder
	for k, b := range blocks {
		if k > 0 {
			sb.WriteByte('\n')
		}
		for _, l := range b.pre {
			sb.WriteString(l + "\n")
		}
		for _, l := range b.cmds {
			sb.WriteString(l + "\n")
		}
		sb.WriteString("----\n")
		for _, l := range b.want {
			sb.WriteString(l + "\n")
		}
	}
	if len(trailer) > 0 {
		sb.WriteByte('\n')
		for _, l := range trailer {
			sb.WriteString(l + "\n")
		}
	}
	return sb.String()
}

func runScript(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks, trailer, err := parseScript(string(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	d := &driver{}
	for k := range blocks {
		b := &blocks[k]
		var got []string
		for _, c := range b.cmds {
			if strings.HasPrefix(strings.TrimSpace(c), "#") {
				continue
			}
			out, err := d.exec(c)
			if err != nil {
				t.Fatalf("%s:%d: %s: %v", path, b.line, c, err)
			}
			got = append(got, out...)
			if d.s != nil {
				if err := d.s.checkInvariants(); err != nil {
					t.Fatalf("%s:%d: %s: invariant broken: %v", path, b.line, c, err)
				}
			}
		}
		if *update {
			b.want = got
			continue
		}
		if strings.Join(got, "\n") != strings.Join(b.want, "\n") {
			t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", path, b.line, strings.Join(b.cmds, " / "),
				strings.Join(b.want, "\n"), strings.Join(got, "\n"))
		}
	}
	if *update {
		if err := os.WriteFile(path, []byte(renderScript(blocks, trailer)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// driver runs script commands against a Scheduler on a virtual clock.
type driver struct {
	s   *Scheduler
	now time.Duration
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (d *driver) exec(line string) ([]string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, nil
	}
	cmd := f[0]
	var pos []string
	kv := map[string]string{}
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	if v, ok := kv["t"]; ok {
		t, err := time.ParseDuration(v)
		if err != nil {
			return nil, err
		}
		if t < d.now {
			return nil, fmt.Errorf("time goes back from %v to %v", d.now, t)
		}
		d.now = t
		delete(kv, "t")
	}
	if cmd == "new" {
		return nil, d.newScheduler(kv)
	}
	if d.s == nil {
		return nil, fmt.Errorf("%s before new", cmd)
	}
	arg := func(k int) (string, error) {
		if k >= len(pos) {
			return "", fmt.Errorf("%s: missing argument %d", cmd, k+1)
		}
		return pos[k], nil
	}
	idx := func(k int) (int, error) {
		a, err := arg(k)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(a)
	}
	var ev Event
	switch cmd {
	case "connect":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		have, err := parseList(kv["have"], d.s.n)
		if err != nil {
			return nil, err
		}
		ev = PeerConnected{Peer: id, Origin: len(pos) > 1 && pos[1] == "origin", Have: have}
	case "disconnect":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		ev = PeerDisconnected{Peer: id}
	case "have", "data":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		i, err := idx(1)
		if err != nil {
			return nil, err
		}
		ev = PeerHave{Peer: id, Index: i}
		if cmd == "data" {
			ev = ChunkProgress{Peer: id, Index: i}
		}
	case "bitfield":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		have, err := parseList(kv["have"], d.s.n)
		if err != nil {
			return nil, err
		}
		ev = PeerBitfield{Peer: id, Have: have}
	case "received":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		i, err := idx(1)
		if err != nil {
			return nil, err
		}
		how, err := arg(2)
		if err != nil {
			return nil, err
		}
		if how != "ok" && how != "bad" {
			return nil, fmt.Errorf("received: want ok or bad, not %q", how)
		}
		ev = ChunkReceived{Peer: id, Index: i, Verified: how == "ok"}
	case "fail":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		i, err := idx(1)
		if err != nil {
			return nil, err
		}
		why, err := arg(2)
		if err != nil {
			return nil, err
		}
		var r FailReason
		switch why {
		case "busy":
			r = FailBusy
		case "notfound":
			r = FailNotFound
		case "error":
			r = FailError
		default:
			return nil, fmt.Errorf("fail: unknown reason %q", why)
		}
		ev = RequestFailed{Peer: id, Index: i, Reason: r}
	case "tick":
		ev = Tick{}
	case "stored":
		i, err := idx(0)
		if err != nil {
			return nil, err
		}
		ev = ChunkStoredLocally{Index: i}
	case "progress":
		p := d.s.Progress()
		return []string{fmt.Sprintf("held=%d missing=%d pending=%d inflight=%d requests=%d peers=%d endgame=%v done=%v",
			p.Held, p.Missing, p.Pending, p.Inflight, p.Requests, p.Peers, p.Endgame, p.Done)}, nil
	case "stats":
		id, err := arg(0)
		if err != nil {
			return nil, err
		}
		st, ok := d.s.PeerStats(id)
		if !ok {
			if reason, banned := d.s.Banned(id); banned {
				return []string{id + ": banned: " + reason}, nil
			}
			return []string{id + ": not connected"}, nil
		}
		return []string{fmt.Sprintf("%s: have=%d inflight=%d window=%d requests=%d received=%d bad=%d timeouts=%d suspected=%d failures=%d offences=%d",
			id, st.Have, st.Inflight, st.Window, st.Requests, st.Received, st.Bad, st.Timeouts, st.Suspected, st.Failures, st.Offences)}, nil
	case "avail":
		var parts []string
		for i := range d.s.n {
			parts = append(parts, fmt.Sprintf("%d:%d", i, d.s.Availability(i)))
		}
		return []string{"avail " + strings.Join(parts, " ")}, nil
	case "next":
		if t, ok := d.s.NextTick(); ok {
			return []string{"next tick at " + t.Sub(epoch).String()}, nil
		}
		return []string{"no tick pending"}, nil
	case "inflight":
		var out []string
		for _, p := range d.s.peers {
			var idx []string
			for _, i := range p.reqs {
				idx = append(idx, strconv.Itoa(int(i)))
			}
			out = append(out, fmt.Sprintf("%s: %s", p.id, strings.Join(idx, " ")))
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown command %q", cmd)
	}
	var out []string
	for _, a := range d.s.Handle(epoch.Add(d.now), ev) {
		out = append(out, a.String())
	}
	return out, nil
}

func (d *driver) newScheduler(kv map[string]string) error {
	n, err := strconv.Atoi(kv["chunks"])
	if err != nil {
		return fmt.Errorf("new: chunks: %v", err)
	}
	have, err := parseList(kv["have"], n)
	if err != nil {
		return err
	}
	var cfg Config
	seed := uint64(1)
	for k, v := range kv {
		var err error
		switch k {
		case "chunks", "have":
		case "seed":
			seed, err = strconv.ParseUint(v, 10, 64)
		case "depth":
			cfg.MaxInflightPerPeer, err = strconv.Atoi(v)
		case "origin-depth":
			cfg.MaxInflightPerOrigin, err = strconv.Atoi(v)
		case "timeout":
			cfg.RequestTimeout, err = time.ParseDuration(v)
		case "endgame":
			cfg.EndgameThreshold, err = strconv.Atoi(v)
		case "dups":
			cfg.MaxDuplicates, err = strconv.Atoi(v)
		case "ban":
			cfg.BanThreshold, err = strconv.Atoi(v)
		case "origin-after":
			cfg.OriginAfterFailures, err = strconv.Atoi(v)
		case "backoff":
			cfg.BusyBackoff, err = time.ParseDuration(v)
		case "max-backoff":
			cfg.MaxBusyBackoff, err = time.ParseDuration(v)
		case "origin-backoff":
			cfg.OriginBusyBackoff, err = time.ParseDuration(v)
		case "max-origin-backoff":
			cfg.MaxOriginBusyBackoff, err = time.ParseDuration(v)
		case "policy":
			switch v {
			case "fallback":
				cfg.OriginPolicy = OriginFallback
			case "peer":
				cfg.OriginPolicy = OriginAsPeer
			default:
				err = fmt.Errorf("unknown policy %q", v)
			}
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return fmt.Errorf("new: %s=%s: %v", k, v, err)
		}
	}
	d.s, err = New(cfg, n, have, rand.New(rand.NewPCG(seed, 0)))
	d.now = 0
	return err
}

// parseList parses "0,2,5-9", "all" or "none" (or "") into a Bitset of
// length n.
func parseList(s string, n int) (Bitset, error) {
	b := NewBitset(n)
	switch s {
	case "", "none":
		return b, nil
	case "all":
		return FullBitset(n), nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return b, fmt.Errorf("list %q: %v", s, err)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return b, fmt.Errorf("list %q: %v", s, err)
			}
		}
		if a < 0 || z >= n || a > z {
			return b, fmt.Errorf("list %q: %s out of range for %d chunks", s, part, n)
		}
		b.SetRange(a, z+1)
	}
	return b, nil
}
