package keys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Armor block types.
const (
	blockPublicKey  = "PGP PUBLIC KEY BLOCK"
	blockPrivateKey = "PGP PRIVATE KEY BLOCK"
	blockSignature  = "PGP SIGNATURE"
	blockMessage    = "PGP MESSAGE"
)

// OpenPGP packet tags (RFC 9580, section 5).
const (
	tagSignature  = 2
	tagOnePassSig = 4
	tagCompressed = 8
	tagLiteral    = 11
)

// safely runs f, which parses or verifies untrusted input with go-crypto,
// and turns a panic into ErrMalformed: a crafted input must never take the
// process down.
func safely(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = malformed("%s: the OpenPGP parser failed on this input (%s)", what, printable(fmt.Sprint(r)))
		}
	}()
	return f()
}

// readBounded reads all of r, refusing more than limit bytes with
// ErrArmorTooLarge. Read errors are returned wrapped (operational), after
// what; the path of a file's *fs.PathError is dropped, as what or the
// caller names the file.
func readBounded(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: read error: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, verr(ErrArmorTooLarge, "%s is larger than %d bytes: refused without parsing it", what, limit)
	}
	return b, nil
}

// dearmor decodes b, which must be exactly one armored block of type
// blockType and nothing else but surrounding white space. If allowBinary,
// input whose first byte is a packet tag is returned as it is.
func dearmor(b []byte, blockType, what string, allowBinary bool) ([]byte, error) {
	if allowBinary && len(b) > 0 && b[0]&0x80 != 0 {
		return b, nil
	}
	begin := []byte("-----BEGIN " + blockType + "-----")
	end := []byte("-----END " + blockType + "-----")
	t := bytes.TrimSpace(b)
	if len(t) == 0 {
		return nil, malformed("%s is empty", what)
	}
	if !bytes.HasPrefix(t, begin) || !bytes.HasSuffix(t, end) {
		if i := bytes.Index(t, []byte("-----BEGIN ")); i >= 0 {
			line := t[i:]
			if j := bytes.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			return nil, malformed("%s: expected one armored %q block and nothing else, found %q", what, blockType, printable(string(bytes.TrimSpace(line))))
		}
		return nil, malformed("%s: expected one armored %q block and nothing else", what, blockType)
	}
	if bytes.Count(t, []byte("-----BEGIN ")) != 1 || bytes.Count(t, []byte("-----END ")) != 1 {
		return nil, malformed("%s holds more than one armored block", what)
	}
	var body []byte
	err := safely(what, func() error {
		block, err := armor.Decode(bytes.NewReader(t))
		if err != nil {
			return malformed("%s: bad armor: %s", what, printable(err.Error()))
		}
		if block.Type != blockType {
			return malformed("%s: armor type %q, want %q", what, printable(block.Type), blockType)
		}
		// The decoded body is shorter than its armor, so this cannot grow
		// past the input already bounded by the caller.
		body, err = io.ReadAll(io.LimitReader(block.Body, int64(len(t))))
		if err != nil {
			return malformed("%s: bad armor: %s", what, printable(err.Error()))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, malformed("%s: armor holds no data", what)
	}
	return body, nil
}

var errTruncated = errors.New("truncated packet")

// rawPacket is one OpenPGP packet cut from its framing: its tag and its
// whole body (partial-length chunks joined).
type rawPacket struct {
	tag  byte
	body []byte
}

// nextPacket splits the first packet off b. Old and new header formats are
// accepted; partial body lengths and the old format's indeterminate length
// only for compressed and literal data, the only packets gpg streams.
func nextPacket(b []byte) (rawPacket, []byte, error) {
	if len(b) == 0 {
		return rawPacket{}, nil, errTruncated
	}
	h := b[0]
	if h&0x80 == 0 {
		return rawPacket{}, nil, fmt.Errorf("byte 0x%02x is not a packet header", h)
	}
	streamable := func(tag byte) bool { return tag == tagCompressed || tag == tagLiteral }
	if h&0x40 == 0 { // old format
		tag := (h >> 2) & 0x0f
		var n uint64
		rest := b[1:]
		switch h & 3 {
		case 0:
			if len(rest) < 1 {
				return rawPacket{}, nil, errTruncated
			}
			n, rest = uint64(rest[0]), rest[1:]
		case 1:
			if len(rest) < 2 {
				return rawPacket{}, nil, errTruncated
			}
			n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
		case 2:
			if len(rest) < 4 {
				return rawPacket{}, nil, errTruncated
			}
			n, rest = uint64(binary.BigEndian.Uint32(rest)), rest[4:]
		case 3:
			if !streamable(tag) {
				return rawPacket{}, nil, fmt.Errorf("packet type %d with indeterminate length", tag)
			}
			return rawPacket{tag, rest}, nil, nil
		}
		if n > uint64(len(rest)) {
			return rawPacket{}, nil, errTruncated
		}
		return rawPacket{tag, rest[:n]}, rest[n:], nil
	}
	tag := h & 0x3f
	rest := b[1:]
	var body []byte
	for first := true; ; first = false {
		n, partial, r, err := newLength(rest)
		if err != nil {
			return rawPacket{}, nil, err
		}
		if partial && !streamable(tag) {
			return rawPacket{}, nil, fmt.Errorf("packet type %d with partial length", tag)
		}
		if n > uint64(len(r)) {
			return rawPacket{}, nil, errTruncated
		}
		if first && !partial {
			return rawPacket{tag, r[:n]}, r[n:], nil
		}
		body = append(body, r[:n]...)
		rest = r[n:]
		if !partial {
			return rawPacket{tag, body}, rest, nil
		}
	}
}

// newLength decodes a new-format body length.
func newLength(b []byte) (n uint64, partial bool, rest []byte, err error) {
	if len(b) < 1 {
		return 0, false, nil, errTruncated
	}
	switch o := b[0]; {
	case o < 192:
		return uint64(o), false, b[1:], nil
	case o < 224:
		if len(b) < 2 {
			return 0, false, nil, errTruncated
		}
		return uint64(o-192)<<8 + uint64(b[1]) + 192, false, b[2:], nil
	case o < 255:
		return 1 << (o & 0x1f), true, b[1:], nil
	default:
		if len(b) < 5 {
			return 0, false, nil, errTruncated
		}
		return uint64(binary.BigEndian.Uint32(b[1:])), false, b[5:], nil
	}
}

// frame gives p a definite-length new-format header, the form go-crypto's
// packet.Read is handed.
func (p rawPacket) frame() []byte {
	out := make([]byte, 0, 6+len(p.body))
	out = append(out, 0xc0|p.tag, 0xff)
	out = binary.BigEndian.AppendUint32(out, uint32(len(p.body)))
	return append(out, p.body...)
}

// parse hands the packet to go-crypto and checks that the parser used the
// whole body: trailing bytes inside a packet are refused, not ignored.
// For literal and compressed data the body is left to the caller to read.
func (p rawPacket) parse(what string) (packet.Packet, error) {
	var pkt packet.Packet
	err := safely(what, func() error {
		r := bytes.NewReader(p.frame())
		var err error
		pkt, err = packet.Read(r)
		if err != nil {
			return malformed("%s: %s", what, printable(err.Error()))
		}
		if p.tag != tagLiteral && p.tag != tagCompressed && r.Len() != 0 {
			return malformed("%s: %d unexpected bytes at the end of a packet", what, r.Len())
		}
		return nil
	})
	return pkt, err
}

// armorBytes encodes body as one armored block of blockType, with the CRC-24
// line that gpg 2.2 expects and a final newline.
func armorBytes(w io.Writer, blockType string, body []byte) error {
	aw, err := armor.Encode(w, blockType, nil)
	if err != nil {
		return err
	}
	if _, err := aw.Write(body); err != nil {
		aw.Close()
		return err
	}
	if err := aw.Close(); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}
