package scenario

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// deltaSmall is Small(n) as a delta run: 5% of its 4 MiB changed in
// four regions.
func deltaSmall(n int) Scenario {
	s := Small(n)
	s.Blob.Base = &Base{Changed: 0.05, Regions: 4}
	return s
}

// TestDelta: version 2 differs from version 1 exactly inside the
// regions, and Delta counts what changed and what a peer must fetch.
func TestDelta(t *testing.T) {
	s := deltaSmall(3)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	v1, err := io.ReadAll(s.BlobVersion(1))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := io.ReadAll(s.BlobVersion(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(v1) != int(s.Blob.Size) || len(v2) != len(v1) {
		t.Fatalf("versions of %d and %d bytes, want %d", len(v1), len(v2), s.Blob.Size)
	}
	regions := s.BaseRegions()
	if len(regions) != 4 {
		t.Fatalf("%d regions, want 4", len(regions))
	}
	var inRegions, differ int64
	prev := int64(0)
	for i, r := range regions {
		if r[0] < prev || r[1] <= r[0] || r[1] > int64(s.Blob.Size) {
			t.Fatalf("region %d is %v after %d", i, r, prev)
		}
		if !bytes.Equal(v1[prev:r[0]], v2[prev:r[0]]) {
			t.Errorf("versions differ before region %d", i)
		}
		inRegions += r[1] - r[0]
		prev = r[1]
	}
	if !bytes.Equal(v1[prev:], v2[prev:]) {
		t.Error("versions differ after the last region")
	}
	for i := range v1 {
		if v1[i] != v2[i] {
			differ++
		}
	}
	want := int64(0.05 * float64(s.Blob.Size))
	if inRegions < want-4 || inRegions > want+4 || differ < inRegions*9/10 {
		t.Errorf("regions cover %d bytes of which %d differ, want about %d", inRegions, differ, want)
	}

	d, err := s.Delta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.ChangedBytes != differ {
		t.Errorf("ChangedBytes %d, counted %d", d.ChangedBytes, differ)
	}
	if d.ChangedChunkBytes < d.ChangedBytes || d.ChangedChunkBytes > int64(s.Blob.Size)/2 {
		t.Errorf("ChangedChunkBytes %d for %d changed bytes", d.ChangedChunkBytes, d.ChangedBytes)
	}
	var sum, notHeld int64
	for i, c := range d.V2.Chunks {
		sum += int64(c.Size)
		if !d.Held[i] {
			notHeld += int64(c.Size)
		}
	}
	if sum != int64(s.Blob.Size) || notHeld != d.ChangedChunkBytes || d.V1.Digest == d.V2.Digest {
		t.Errorf("version 2: %d bytes, %d not held, digests %s and %s", sum, notHeld, d.V1.Digest, d.V2.Digest)
	}
	if b := s.BoundFor(d.ChangedChunkBytes); b.Seconds >= s.Bound().Seconds || b.Seconds <= 0 {
		t.Errorf("bound for the changed chunks %v, for the blob %v", b.Seconds, s.Bound().Seconds)
	}
	// Deterministic.
	if again := s.BaseRegions(); again[2] != regions[2] {
		t.Errorf("regions moved: %v then %v", regions, again)
	}
	if _, err := Small(1).Delta(context.Background()); !errors.Is(err, ErrInvalid) {
		t.Errorf("delta without a base: %v", err)
	}
}

func TestDeltaValidate(t *testing.T) {
	for name, b := range map[string]*Base{
		"changed 0":         {Changed: 0},
		"changed 1":         {Changed: 1},
		"negative regions":  {Changed: 0.1, Regions: -1},
		"too many regions":  {Changed: 0.1, Regions: maxBaseRegions + 1},
		"regions too small": {Changed: 0.0001, Regions: 1000},
	} {
		s := Small(2)
		s.Blob.Base = b
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	s := deltaSmall(2)
	s.Baselines = []string{"origin-only"}
	if err := s.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("with a baseline: %v", err)
	}
	s = deltaSmall(2)
	s.Mode = ModeNetns
	if err := s.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("in netns mode: %v", err)
	}
	s = Small(2)
	s.Conns.Max = -1
	if err := s.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("conns.max -1: %v", err)
	}
	got, err := Parse([]byte("blob: {size: 8MiB, chunk: 64KiB, base: {changed: 0.05, regions: 8}}\nconns: {max: 5, inbound: 10}\n"))
	if err != nil || got.Blob.Base == nil || got.Blob.Base.Regions != 8 || got.Conns != (Conns{Max: 5, Inbound: 10}) {
		t.Errorf("parsed %+v, %+v: %v", got.Blob, got.Conns, err)
	}
}
