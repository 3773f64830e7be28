package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/testbed/transferbench"
)

func newBenchTransferCmd(g *globals) *cobra.Command {
	var (
		sizeFlag string
		seed     uint64
		dir      string
		profile  string
	)
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "Pull a blob between two peers on loopback, against a raw libp2p stream",
		Long: `bench transfer starts two peer engines in this process on loopback, over the
real data plane (libp2p TCP + TLS 1.3 + yamux): a seeder holding a generated
blob of --size bytes, and a puller. It times the pull, which includes the
manifest lookup, every chunk's SHA-256 verification, the fsynced writes to the
store, and the final check of the blob's digest (transfer_mbps).

In the same run it writes and reads --size bytes on one raw libp2p stream
between two hosts built the same way (raw_stream_mbps). ratio =
transfer_mbps / raw_stream_mbps.

Stores go in --dir, by default /dev/shm (memory) when it is a tmpfs, so that
the pull is measured the way the raw stream is, without a disk; point --dir at
the disk a peer would use to include it. Every chunk is fsynced, so the same
run also writes and fsyncs --size bytes to one file there (disk_sync_mbps):
ceiling_ratio = transfer_mbps / min(raw_stream_mbps, disk_sync_mbps).`,
		Example: `  p2pctl bench transfer --size 1GiB --json`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := units.ParseSize(sizeFlag)
			if err != nil || size <= 0 {
				return usagef("--size %q: want a size such as 1GiB", sizeFlag)
			}
			o := transferbench.Options{Size: size, Seed: seed, Dir: dir, Chunker: g.cfg.Chunker}
			closeProfile, err := openProfile(profile, &o.CPUProfile)
			if err != nil {
				return err
			}
			defer closeProfile()
			res, err := transferbench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			w := g.stdout
			fmt.Fprintf(w, "blob        %s in %d chunks (setup %.1fs)\n", units.FormatSize(res.Size), res.Chunks, res.SetupSeconds)
			fmt.Fprintf(w, "transfer    %8.0f MB/s  (%.2fs, %.2f CPU-seconds, peak RSS %s)\n", res.TransferMBps, res.TransferSeconds, res.TransferCPUSeconds, units.FormatSize(res.PeakRSSBytes))
			fmt.Fprintf(w, "raw stream  %8.0f MB/s  (%.2fs, %.2f CPU-seconds)\n", res.RawStreamMBps, res.RawStreamSeconds, res.RawStreamCPUSeconds)
			fmt.Fprintf(w, "disk sync   %8.0f MB/s  (%s on %s)\n", res.DiskSyncMBps, res.Dir, res.FS)
			fmt.Fprintf(w, "ratio       %8.2f     (transfer / raw stream)\n", res.Ratio)
			fmt.Fprintf(w, "ceiling     %8.2f     (transfer / min(raw stream, disk sync))\n", res.CeilingRatio)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sizeFlag, "size", "1GiB", "blob size")
	f.Uint64Var(&seed, "seed", 1, "generator seed")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the pull to this file (go tool pprof)")
	f.StringVar(&dir, "dir", "", "where the two temporary stores go (default "+transferbench.DefaultDir()+")")
	return cmd
}
