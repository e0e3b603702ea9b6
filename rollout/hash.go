package rollout

import (
	"math/bits"
	"strconv"
)

// Variant is the side of a rollout a key is assigned to.
type Variant uint8

// The two variants of a rollout.
const (
	// Baseline is the current, trusted behaviour.
	Baseline Variant = iota
	// Canary is the change being rolled out.
	Canary
)

// String returns "baseline" or "canary".
func (v Variant) String() string {
	switch v {
	case Baseline:
		return "baseline"
	case Canary:
		return "canary"
	}
	return "variant(" + strconv.Itoa(int(v)) + ")"
}

// Bucketing selects how keys are mapped to the canary.
type Bucketing uint8

const (
	// BucketingDefault is ringfence's own assignment: a 64-bit hash of the
	// salt and the key (see the package documentation, section
	// "Assignment"), mapped to one of 1,000,000 buckets, so percents are
	// exact to 0.0001%.
	BucketingDefault Bucketing = iota
	// BucketingUnleash reproduces Unleash's gradual-rollout bucketing: the
	// bucket is murmur3 (x86, 32-bit, seed 0) of "groupId:key", modulo 100,
	// plus 1, and a key is in the canary when its bucket is at most the
	// percent. The salt is the groupId. Percents must be whole numbers.
	BucketingUnleash
)

// Buckets is the number of buckets of BucketingDefault: a percent p covers
// the buckets below p*10,000.
const Buckets = 1_000_000

// Constants of the assignment hash. The multipliers are the 64-bit primes
// of the xxHash family.
const (
	prime1 = 0x9E3779B185EBCA87
	prime2 = 0xC2B2AE3D27D4EB4F
	prime3 = 0x165667B19E3779F9
	prime4 = 0x85EBCA77C2B2AE63
	// hashSeed is the initial state: the ASCII bytes "ringfenc" read as a
	// little-endian word.
	hashSeed = 0x636e65666769_6e72
)

// hasher is the state of the assignment hash after the salt prefix.
type hasher struct {
	state  uint64 // state after the padded prefix
	prefix uint64 // length of the padded prefix in bytes
}

// newHasher absorbs the prefix uint32be(len(salt)) || salt || zero padding
// to a multiple of 8 bytes.
func newHasher(salt string) hasher {
	n := 4 + len(salt)
	padded := (n + 7) &^ 7
	buf := make([]byte, padded)
	l := uint32(len(salt))
	buf[0], buf[1], buf[2], buf[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
	copy(buf[4:], salt)
	h := uint64(hashSeed)
	for i := 0; i < padded; i += 8 {
		h = absorb(h, le64(buf[i:i+8]))
	}
	return hasher{state: h, prefix: uint64(padded)}
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// absorb mixes one 8-byte little-endian word into the state.
func absorb(h, w uint64) uint64 {
	k := bits.RotateLeft64(w*prime2, 31) * prime1
	return bits.RotateLeft64(h^k, 27)*prime1 + prime4
}

// sum returns the 64-bit hash of the prefix followed by key. It reads the
// string in place and allocates nothing.
func (hs hasher) sum(key string) uint64 {
	h := hs.state
	i := 0
	for ; i+8 <= len(key); i += 8 {
		w := uint64(key[i]) | uint64(key[i+1])<<8 | uint64(key[i+2])<<16 | uint64(key[i+3])<<24 |
			uint64(key[i+4])<<32 | uint64(key[i+5])<<40 | uint64(key[i+6])<<48 | uint64(key[i+7])<<56
		h = absorb(h, w)
	}
	if i < len(key) {
		var w uint64
		for j := 0; i+j < len(key); j++ {
			w |= uint64(key[i+j]) << (8 * j)
		}
		h = absorb(h, w)
	}
	h ^= hs.prefix + uint64(len(key))
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
}

// bucket maps a hash to [0, Buckets) by multiply-shift on its top 32 bits.
func bucket(h uint64) uint32 {
	return uint32(((h >> 32) * Buckets) >> 32)
}

// unleashBucket returns Unleash's normalized value, in [1, 100], for
// groupID and id: murmur3_32(groupID + ":" + id, seed 0) % 100 + 1.
func unleashBucket(groupID, id string) uint32 {
	var m murmur3
	m.writeString(groupID)
	m.writeByte(':')
	m.writeString(id)
	return m.sum()%100 + 1
}

// murmur3 is a streaming MurmurHash3 x86 32-bit hash with seed 0.
type murmur3 struct {
	h    uint32
	tail uint32 // pending bytes, little-endian
	nt   uint   // number of pending bytes
	n    uint32 // total length
}

const (
	m3c1 = 0xcc9e2d51
	m3c2 = 0x1b873593
)

func (m *murmur3) writeString(s string) {
	i := 0
	for ; i < len(s) && m.nt != 0; i++ {
		m.writeByte(s[i])
	}
	// Whole blocks, when no bytes are pending.
	for ; i+4 <= len(s); i += 4 {
		k := uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
		m.block(k)
		m.n += 4
	}
	for ; i < len(s); i++ {
		m.writeByte(s[i])
	}
}

func (m *murmur3) block(k uint32) {
	k *= m3c1
	k = bits.RotateLeft32(k, 15) * m3c2
	m.h ^= k
	m.h = bits.RotateLeft32(m.h, 13)*5 + 0xe6546b64
}

func (m *murmur3) writeByte(b byte) {
	m.tail |= uint32(b) << (8 * m.nt)
	m.nt++
	m.n++
	if m.nt == 4 {
		m.block(m.tail)
		m.tail, m.nt = 0, 0
	}
}

func (m *murmur3) sum() uint32 {
	h := m.h
	if m.nt > 0 {
		k := m.tail * m3c1
		k = bits.RotateLeft32(k, 15) * m3c2
		h ^= k
	}
	h ^= m.n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// murmur3Sum32 returns MurmurHash3 x86 32-bit with seed 0 of s.
func murmur3Sum32(s string) uint32 {
	var m murmur3
	m.writeString(s)
	return m.sum()
}
