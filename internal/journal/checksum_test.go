package journal

import (
	"hash/crc32"
	"testing"
)

func TestChecksumMatchesTheLibrary(t *testing.T) {
	for typ := range 256 {
		for _, body := range [][]byte{nil, []byte("x"), []byte("hello world")} {
			want := crc32.Checksum(append([]byte{byte(typ)}, body...), castagnoli)
			if got := checksum(byte(typ), body); got != want {
				t.Fatalf("checksum(%d, %q) = %#x, want %#x", typ, body, got, want)
			}
		}
	}
}
