package transferbench

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const size = 8 << 20
	res, err := Run(ctx, Options{Size: size, Dir: dir, Chunker: chunker.Config{MinSize: 64 << 10, AvgSize: 256 << 10, MaxSize: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Size != size || res.Chunks == 0 || res.TransferMBps <= 0 || res.RawStreamMBps <= 0 || res.Ratio <= 0 || res.PeakRSSBytes <= 0 ||
		res.DiskSyncMBps <= 0 || res.CeilingRatio <= 0 || res.FS == "" || res.FS == "unknown" {
		t.Errorf("incomplete result %+v", res)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("left behind in %s: %v %v", dir, ents, err)
	}
}

var (
	benchSize = flag.Int64("transferbench.size", 0, "run TestMeasure with a blob of this many bytes")
	benchDir  = flag.String("transferbench.dir", "", "where TestMeasure puts its stores (default: the temp dir)")
)

// TestMeasure runs one full measurement and prints the Result as JSON,
// when -transferbench.size is given:
//
//	go test -run TestMeasure -v ./testbed/transferbench -transferbench.size=1073741824
func TestMeasure(t *testing.T) {
	if *benchSize == 0 {
		t.Skip("set -transferbench.size to measure")
	}
	res, err := Run(context.Background(), Options{Size: *benchSize, Dir: *benchDir})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
}
