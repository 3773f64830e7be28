package units

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"1MiB", 1 << 20, true},
		{"1.5 GiB", 3 << 29, true},
		{"10GB", 10e9, true},
		{"4m", 4 << 20, true},
		{"256KiB", 256 << 10, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1XB", 0, false},
		{"NaN", 0, false},
		{"1e30TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1 << 20: "1.00 MiB", 3 << 29: "1.50 GiB"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"1Gbit", 125_000_000, false},
		{"100 Mbit", 12_500_000, false},
		{"2.5gbps", 312_500_000, false},
		{"125MB/s", 125_000_000, false},
		{"10MiB/s", 10 << 20, false},
		{"1048576", 1 << 20, false},
		{"0", 0, false},
		{"unlimited", 0, false},
		{"fast", 0, true},
		{"-1Gbit", 0, true},
		{"1e30Gbit", 0, true},
	} {
		got, err := ParseRate(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.bad)
		}
	}
	if got := FormatRate(125_000_000); got != "1 Gbit/s" {
		t.Errorf("FormatRate = %q", got)
	}
	var r Rate
	if err := r.UnmarshalText([]byte("100Mbit")); err != nil || r != 12_500_000 {
		t.Errorf("Rate.UnmarshalText = %d, %v", r, err)
	}
	var s Size
	if err := s.UnmarshalText([]byte("1GiB")); err != nil || s != 1<<30 {
		t.Errorf("Size.UnmarshalText = %d, %v", s, err)
	}
}
