package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
)

// The crash test re-executes this test binary as a writer process, kills
// it with SIGKILL while it writes, and checks what it left on disk.
const (
	helperDirEnv  = "P2PD_STORE_CRASH_DIR"
	helperSeedEnv = "P2PD_STORE_CRASH_SEED"
)

// writerLoop opens the store in dir and puts n pseudo-random chunks of 1-4
// MiB derived from seed, reporting each on w as "begin <i> <hex>" before the
// Put and "put <i> <hex>" after it returned.
func writerLoop(dir string, seed uint64, n int, w io.Writer) error {
	s, err := Open(DefaultConfig(dir))
	if err != nil {
		return err
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		data := chunkData(seed<<32|uint64(i), 1<<20+rng.IntN(3<<20))
		d := chunker.Sum(data)
		if _, err := fmt.Fprintf(w, "begin %d %s\n", i, d.Hex()); err != nil {
			return err
		}
		if err := s.Put(context.Background(), d, data); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "put %d %s\n", i, d.Hex()); err != nil {
			return err
		}
	}
	return nil
}

// parsePut returns the digest of a "put <i> <hex>" line.
func parsePut(line string) (chunker.Digest, bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "put" {
		return chunker.Digest{}, false
	}
	d, err := chunker.ParseDigest(chunker.DigestPrefix + f[2])
	return d, err == nil
}

// TestHelperWriter is the writer process of TestCrashDuringWrites when
// started with helperDirEnv set: it writes until it is killed. Run
// normally, it runs the same loop for a few chunks in this process and
// checks that every acknowledged chunk is stored intact.
func TestHelperWriter(t *testing.T) {
	if dir := os.Getenv(helperDirEnv); dir != "" {
		seed, err := strconv.ParseUint(os.Getenv(helperSeedEnv), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		// Stop on our own if the parent never kills us. If the parent dies,
		// writing to the closed pipe fails and stops us sooner.
		if err := writerLoop(dir, seed, 50, os.Stdout); err != nil {
			t.Fatal(err)
		}
		return
	}
	dir := t.TempDir()
	var out strings.Builder
	if err := writerLoop(dir, 99, 3, &out); err != nil {
		t.Fatal(err)
	}
	var acked []chunker.Digest
	for _, line := range strings.Split(out.String(), "\n") {
		if d, ok := parsePut(line); ok {
			acked = append(acked, d)
		}
	}
	if len(acked) != 3 {
		t.Fatalf("writer acknowledged %d chunks, want 3:\n%s", len(acked), out.String())
	}
	checkCrashedStore(t, dir, acked)
}

// checkCrashedStore checks a store directory left by a killed writer:
// first the raw files, then through a reopened store.
func checkCrashedStore(t *testing.T, dir string, acked []chunker.Digest) {
	t.Helper()
	// Before Open: every file under chunks/ is a complete chunk named by
	// its digest. Torn data may only be in tmp/.
	for _, p := range chunkFiles(t, dir) {
		name := filepath.Base(p)
		d, ok := parseHexName(name)
		if !ok || filepath.Base(filepath.Dir(p)) != name[:2] {
			t.Errorf("unexpected file under chunks/: %s", p)
			continue
		}
		if got := chunker.Sum(readFile(t, p)); got != d {
			t.Errorf("visible chunk %s is torn or corrupt: hashes to %s", d, got)
		}
	}
	temps := listDir(t, filepath.Join(dir, tmpDir))

	s, err := Open(DefaultConfig(dir), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	if left := listDir(t, filepath.Join(dir, tmpDir)); len(left) != 0 {
		t.Errorf("Open left temp files: %v", left)
	}
	for _, d := range acked {
		if !s.Has(d) {
			t.Errorf("acknowledged chunk %s lost", d)
		}
	}
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dropped != 0 || rep.Missing != 0 || rep.Checked != s.Len() {
		t.Errorf("Verify after crash = %+v, want nothing dropped of %d", rep, s.Len())
	}
	t.Logf("after crash: %d temp files cleaned, %d chunks (%d bytes) verified, %d acknowledged",
		len(temps), rep.Checked, rep.CheckedBytes, len(acked))
}

func TestCrashDuringWrites(t *testing.T) {
	if os.Getenv(helperDirEnv) != "" {
		t.Fatal("crash test running inside its own writer process")
	}
	// Kill points. afterPuts: acknowledged Puts (this run) to wait for.
	// midWrite: then also wait until a temp file has data in it, so the
	// kill lands while a chunk is being written or synced.
	rounds := []struct {
		name      string
		afterPuts int
		midWrite  bool
	}{
		{"during the first write", 0, true},
		{"right after an acknowledged put", 2, false},
		{"during a write after several puts", 3, true},
		{"during another write", 1, true},
	}
	dir := t.TempDir()
	var acked []chunker.Digest
	for i, r := range rounds {
		t.Run(r.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperSeedEnv+"="+strconv.Itoa(i+1))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1000)
			var readers sync.WaitGroup
			readers.Go(func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			})
			var out []string
			puts := 0
			take := func(line string) {
				out = append(out, line)
				if d, ok := parsePut(line); ok {
					acked = append(acked, d)
					puts++
				}
			}
			killed := false
			kill := func() {
				if !killed {
					killed = true
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Errorf("kill: %v", err)
					}
				}
			}
			defer func() { // on any failure, do not leave the child behind
				kill()
				for line := range lines {
					take(line)
				}
				readers.Wait()
				cmd.Wait()
			}()

			// Wait for the child's progress reports.
			deadline := time.After(20 * time.Second)
			for puts < r.afterPuts {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatalf("writer exited early; output:\n%s", strings.Join(out, "\n"))
					}
					take(line)
				case <-deadline:
					t.Fatalf("writer made no progress; output:\n%s", strings.Join(out, "\n"))
				}
			}
			if r.midWrite {
				tmp := filepath.Join(dir, tmpDir)
				waitFor(t, 20*time.Second, "a temp file with data", func() bool {
					for _, name := range listDir(t, tmp) {
						if fi, err := os.Stat(filepath.Join(tmp, name)); err == nil && fi.Size() > 0 {
							return true
						}
					}
					return false
				})
			}
			kill()
			for line := range lines {
				take(line)
			}
			readers.Wait()
			err = cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("writer was not killed by SIGKILL: %v; output:\n%s", err, strings.Join(out, "\n"))
			}
			t.Logf("killed the writer after %d acknowledged puts this run (%d lines)", puts, len(out))
			checkCrashedStore(t, dir, acked)
		})
	}
}
