package statefile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newFile(t *testing.T) *File {
	t.Helper()
	f, err := New(filepath.Join(t.TempDir(), "state"))
	require.NoError(t, err, "New")
	return f
}

func TestNewRejectsEmptyPath(t *testing.T) {
	_, err := New("")
	require.Error(t, err, `New("")`)
}

func TestLoadMissingFileIsNotFound(t *testing.T) {
	f := newFile(t)
	_, _, err := f.Load()
	require.ErrorIs(t, err, ErrNotFound, "Load on a fresh path")
}

func TestSaveThenLoadRoundTrips(t *testing.T) {
	f := newFile(t)
	v, err := f.Save([]byte("first"), 0)
	require.NoError(t, err, "Save(first, 0)")
	assert.Equal(t, uint64(1), v, "version after the first Save")

	v, err = f.Save([]byte("second"), 1)
	require.NoError(t, err, "Save(second, 1)")
	assert.Equal(t, uint64(2), v, "version after the second Save")

	data, version, err := f.Load()
	require.NoError(t, err, "Load")
	assert.Equal(t, "second", string(data), "Load data")
	assert.Equal(t, uint64(2), version, "Load version")

	entries, err := os.ReadDir(filepath.Dir(f.Path()))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files are left behind")
}

func TestSaveEmptyRecord(t *testing.T) {
	f := newFile(t)
	_, err := f.Save(nil, 0)
	require.NoError(t, err, "Save(nil, 0)")
	data, _, err := f.Load()
	require.NoError(t, err, "Load")
	assert.Empty(t, data, "Load data")
}

func TestSaveWithStaleVersionConflicts(t *testing.T) {
	tests := []struct {
		name   string
		saved  int
		expect uint64
	}{
		{"expecting a record where none exists", 0, 1},
		{"expecting none where one exists", 1, 0},
		{"expecting an older version", 2, 1},
		{"expecting a newer version", 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFile(t)
			for i := range tt.saved {
				_, err := f.Save([]byte("x"), uint64(i))
				require.NoError(t, err)
			}
			_, err := f.Save([]byte("y"), tt.expect)
			require.ErrorIs(t, err, ErrConflict, "Save(y, %d) after %d saves", tt.expect, tt.saved)
			if tt.saved > 0 {
				data, v, err := f.Load()
				require.NoError(t, err)
				assert.Equal(t, "x", string(data), "a conflicting Save leaves the record alone")
				assert.Equal(t, uint64(tt.saved), v)
			}
		})
	}
}

func TestConcurrentSavesFromOneVersionOnlyOneWins(t *testing.T) {
	f := newFile(t)
	_, err := f.Save([]byte("base"), 0)
	require.NoError(t, err)

	const writers = 16
	var wg sync.WaitGroup
	wins := make(chan uint64, writers)
	for range writers {
		wg.Go(func() {
			if v, err := f.Save([]byte("mine"), 1); err == nil {
				wins <- v
			} else {
				assert.ErrorIs(t, err, ErrConflict)
			}
		})
	}
	wg.Wait()
	close(wins)
	var got []uint64
	for v := range wins {
		got = append(got, v)
	}
	assert.Equal(t, []uint64{2}, got, "exactly one writer replaces version 1")
}

func TestDamagedFilesAreCorrupt(t *testing.T) {
	f := newFile(t)
	_, err := f.Save([]byte("a record worth keeping"), 0)
	require.NoError(t, err)
	good, err := os.ReadFile(f.Path())
	require.NoError(t, err)

	// Every single-bit flip anywhere in the file must be detected.
	for i := range len(good) {
		for bit := range 8 {
			bad := append([]byte(nil), good...)
			bad[i] ^= 1 << bit
			require.NoError(t, os.WriteFile(f.Path(), bad, 0o600))
			_, _, err := f.Load()
			require.ErrorIs(t, err, ErrCorrupt, "Load after flipping bit %d of byte %d", bit, i)
		}
	}
	// Every truncation, and trailing garbage, must be detected too.
	for n := range len(good) {
		require.NoError(t, os.WriteFile(f.Path(), good[:n], 0o600))
		_, _, err := f.Load()
		require.ErrorIs(t, err, ErrCorrupt, "Load of the first %d bytes", n)
	}
	require.NoError(t, os.WriteFile(f.Path(), append(good, 0), 0o600))
	_, _, err = f.Load()
	require.ErrorIs(t, err, ErrCorrupt, "Load with a trailing byte")
}

func TestSaveRefusesToOverwriteACorruptRecord(t *testing.T) {
	f := newFile(t)
	require.NoError(t, os.WriteFile(f.Path(), []byte("garbage"), 0o600))
	_, err := f.Save([]byte("new"), 0)
	require.ErrorIs(t, err, ErrCorrupt, "Save over a corrupt file")
	raw, err := os.ReadFile(f.Path())
	require.NoError(t, err)
	assert.Equal(t, "garbage", string(raw), "the corrupt file is left for inspection")
}

func TestSaveRejectsOversizedRecords(t *testing.T) {
	f := newFile(t)
	_, err := f.Save(make([]byte, MaxSize+1), 0)
	require.Error(t, err, "Save of MaxSize+1 bytes")
	_, _, err = f.Load()
	require.ErrorIs(t, err, ErrNotFound, "nothing was written")
}

func TestSaveIntoMissingDirectoryFails(t *testing.T) {
	f, err := New(filepath.Join(t.TempDir(), "no", "such", "dir", "state"))
	require.NoError(t, err)
	_, err = f.Save([]byte("x"), 0)
	require.Error(t, err, "Save into a missing directory")
}

func FuzzDecode(f *testing.F) {
	f.Add(encode([]byte("hello"), 1))
	f.Add([]byte{})
	f.Add([]byte("RFS1"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		data, version, err := decode(raw)
		if err != nil {
			return
		}
		// Anything accepted must re-encode to exactly the input.
		assert.Equal(t, raw, encode(data, version), "decode(%x) accepted a non-canonical record", raw)
	})
}
