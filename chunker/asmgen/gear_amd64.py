# Generator for chunker/gear_amd64.s. Run `go generate ./chunker` after editing;
# never edit the .s file by hand.
import sys
NS = 16   # scalar bytes per scalar lane per group (= per 8 vector steps)
KS = 2    # scalar lanes

class Alloc:
    def __init__(self, regs): self.free = list(regs)
    def get(self): return self.free.pop(0)
    def put(self, r):
        assert r not in self.free, r
        self.free.append(r)

ACC = ['Z15', 'Z14']
al = Alloc(['Z%d' % i for i in list(range(0, 8)) + list(range(10, 14))])
LANE = ['(SI)', '(SI)(DX*1)', '(SI)(DX*2)', '(SI)(R9*1)',
        '(R10)', '(R10)(DX*1)', '(R10)(DX*2)', '(R10)(R9*1)']
SREG = [('R12', 'R15'), ('R13', 'BX')]

out = []
def e(s): out.append('\t' + s)
def c(s): out.append('\t// ' + s)
def lab(s): out.append(s + ':')
def unpk(op, a, b, dst): e('%s %s, %s, %s' % (op, b, a, dst))

stub = [0]
stubs = []
def scalar_step(lane, off, tested):
    ptr, h = SREG[lane]
    e('MOVBQZX %d(%s), AX' % (off, ptr))
    e('MOVQ (R11)(AX*8), AX')
    e('LEAQ (AX)(%s*2), %s' % (h, h))
    if tested:
        k = stub[0]; stub[0] += 1
        e('CMPQ %s, R14' % h)
        e('JCS hit%d' % k)
        lab('ret%d' % k)
        stubs.append('hit%d:\n\tMOVB $1, %d(SP)\n\tJMP ret%d' % (k, 8 + lane, k))

def interleave(vec, sc):
    n = len(vec); m = len(sc); j = 0
    for i, v in enumerate(vec):
        out.append(v)
        while j < m and (j + 1) * n <= (i + 1) * m:
            sc[j](); j += 1
    while j < m:
        sc[j](); j += 1

def prep():
    c('Transpose the next 64 bytes of the 8 vector lanes into the 8 index')
    c('vectors of the next superstep, stored to the buffer half DI^512.')
    c('Index vector g, 128-bit lane L, byte 2c+e = byte 8g+c of lane 2L+e.')
    e('MOVQ DI, AX')
    e('XORQ $512, AX')
    Lr = []
    for m in range(8):
        r = al.get(); Lr.append(r)
        e('VMOVDQU64 %s, %s' % (LANE[m], r))
    U = {}
    for P in range(4):
        a, b = Lr[2*P], Lr[2*P+1]
        lo = al.get()
        unpk('VPUNPCKLBW', a, b, lo); unpk('VPUNPCKHBW', a, b, b); al.put(a)
        U[(P, 0)], U[(P, 1)] = lo, b
    for h in range(2):
        u0, u1, u2, u3 = (U[(P, h)] for P in range(4))
        A0 = al.get(); e('VSHUFI64X2 $0x44, %s, %s, %s' % (u1, u0, A0))
        e('VSHUFI64X2 $0xEE, %s, %s, %s' % (u1, u0, u1)); A1 = u1; al.put(u0)
        A2 = al.get(); e('VSHUFI64X2 $0x44, %s, %s, %s' % (u3, u2, A2))
        e('VSHUFI64X2 $0xEE, %s, %s, %s' % (u3, u2, u3)); A3 = u3; al.put(u2)
        for k, (x, y, imm) in enumerate(((A0, A2, 0x88), (A0, A2, 0xDD), (A1, A3, 0x88), (A1, A3, 0xDD))):
            r = al.get(); e('VSHUFI64X2 $0x%02X, %s, %s, %s' % (imm, y, x, r))
            e('VMOVDQA64 %s, %d(AX)' % (r, 64*(2*k + h))); al.put(r)
        for r in (A0, A1, A2, A3): al.put(r)

stepno = [0]
def group(tested):
    saved = out[:]; del out[:]
    X = al.get()
    c('Look up byte plane p of gearTable for the 64 index bytes: entries')
    c('0-127 where bit 7 is clear (K2), 128-255 where it is set (K1).')
    e('VMOVDQA64 (DI), %s' % X)
    e('VPMOVB2M %s, K1' % X)
    e('KNOTQ K1, K2')
    R = []
    for p in range(8):
        r = al.get()
        e('VMOVDQA64 %s, %s' % (X, r))
        e('VPERMI2B %d(R8), Z%d, K2, %s' % (256*p + 64, 16 + 2*p, r))
        e('VPERMI2B %d(R8), Z%d, K1, %s' % (256*p + 192, 17 + 2*p, r))
        R.append(r)
    al.put(X)
    c('Unpack the planes into 64-bit entries: bytes, words, then dwords.')
    S = {}
    for a in range(0, 8, 2):
        lo = al.get()
        unpk('VPUNPCKLBW', R[a], R[a+1], lo); unpk('VPUNPCKHBW', R[a], R[a+1], R[a+1]); al.put(R[a])
        S[(a, 0)], S[(a, 1)] = lo, R[a+1]
    W = {}
    for x in range(2):
        for a in (0, 4):
            s0, s1 = S[(a, x)], S[(a+2, x)]
            lo = al.get()
            unpk('VPUNPCKLWD', s0, s1, lo); unpk('VPUNPCKHWD', s0, s1, s1); al.put(s0)
            W[(a, x, 0)], W[(a, x, 1)] = lo, s1
    step = 0
    for x in range(2):
        for y in range(2):
            w0, w1 = W[(0, x, y)], W[(4, x, y)]
            lo = al.get()
            unpk('VPUNPCKLDQ', w0, w1, lo); unpk('VPUNPCKHDQ', w0, w1, w1); al.put(w0)
            for q in (lo, w1):
                c('step %d: h = 2h + entry%s' % (step, ', fold h into the minimum' if tested else ''))
                e('VPADDQ Z8, Z8, Z8')
                e('VPADDQ %s, Z8, Z8' % q)
                if tested:
                    acc = ACC[stepno[0] % len(ACC)]; stepno[0] += 1
                    e('VPMINUD Z8, %s, %s' % (acc, acc))
                al.put(q)
                step += 1
    vec = out[:]
    del out[:]; out.extend(saved)
    sc = []
    for j in range(NS):
        for lane in range(KS):
            sc.append(lambda lane=lane, j=j: scalar_step(lane, j, tested))
    interleave(vec, sc)
    e('ADDQ $64, DI')
    for lane in range(KS):
        e('ADDQ $%d, %s' % (NS, SREG[lane][0]))

def superstep(tested, label):
    e('CMPQ CX, $1')
    e('JEQ %s_noprep' % label)
    e('ADDQ $64, SI')
    e('ADDQ $64, R10')
    prep()
    lab('%s_noprep' % label)
    lab('%s_group' % label)
    c('One group: 8 steps of the vector lanes, %d of each scalar lane, interleaved.' % NS)
    group(tested)
    e('TESTQ $511, DI')
    e('JNZ %s_group' % label)
    c('Switch to the other buffer half, which prep has filled.')
    e('SUBQ $512, DI')
    e('XORQ $512, DI')
    e('DECQ CX')

HDR = '''// Code generated by chunker/asmgen/gear_amd64.py; DO NOT EDIT.
// The warm-up group and the scan group repeat one pattern, with the
// scalar-lane instructions spread evenly between the vector ones.

//go:build amd64 && !purego

#include "textflag.h"

// gearScanAVX512 hashes one block of the gear scan (see gear_amd64.go) and
// reports which of its lanes may contain a candidate.
//
// Lanes. The block has 8 vector lanes of 64*(n-1) positions, starting at
// p+64, p+64+stride, ..., and 2 scalar lanes of %(ns8)d*(n-1) positions,
// starting at q+%(ns8)d and q+%(ns8)d+qstride. Every lane is hashed from 64
// (vector) or %(ns8)d (scalar) bytes before its first position, so the first
// superstep is warm-up and is not tested.
//
// Vector lanes. Z8 holds the 8 hashes. gearTable is kept as 8 byte planes
// (planes[p][v] = byte p of gearTable[v]); plane p's entries 0-63 and 128-191
// live in Z(16+2p) and Z(17+2p), entries 64-127 and 192-255 are read from
// memory by VPERMI2B. A superstep covers 64 bytes of each vector lane: prep
// transposes them into 8 index vectors (in a 1 KiB stack buffer, double
// buffered so that stores are never read back soon after), then each group
// takes one index vector (8 bytes of each lane), looks up the 8 planes, and
// unpacks them into 8 vectors of 64-bit entries, one per step, in lane order.
// Z15 and Z14 accumulate the unsigned minimum of the dwords of every hash, so
// at the end a lane whose high dword minimum is below thrHi may hold a
// candidate; Go rescans it exactly.
//
// Scalar lanes. R15 and BX hold the two hashes, updated from gearTable with
// one LEAQ per byte and compared with thr exactly; a hit sets a byte flag at
// 8(SP) or 9(SP). Their instructions are spread through the vector code, where
// they use the integer pipes the vector code leaves idle.
//
// Result: bit l (0-7) for vector lane l, bits 8 and 9 for the scalar lanes.
//
// Registers: SI, R10 = vector lanes 0 and 4 at the next prep offset; DX =
// stride; R9 = 3*stride; R8 = planes; DI = index buffer; CX = supersteps
// left; R11 = gearTable; R12, R13 = scalar lanes; R14 = thr; AX = scratch.

// func gearScanAVX512(p *byte, stride int, n int, thr uint64, planes *[8][256]byte, tab *[256]uint64, q *byte, qstride int, thrHi uint32) uint64
TEXT ·gearScanAVX512(SB), 0, $2112-80
	MOVQ p+0(FP), SI
	MOVQ stride+8(FP), DX
	MOVQ n+16(FP), CX
	MOVQ thr+24(FP), R14
	MOVQ planes+32(FP), R8
	MOVQ tab+40(FP), R11
	MOVQ q+48(FP), R12
	MOVQ qstride+56(FP), R13
	ADDQ R12, R13
	XORQ R15, R15
	XORQ BX, BX
	LEAQ (DX)(DX*2), R9
	LEAQ (SI)(DX*4), R10
	MOVQ $0, 8(SP)
	// DI: 1 KiB index buffer, 1 KiB aligned so that XOR 512 flips halves.
	LEAQ 1023+16(SP), DI
	ANDQ $~1023, DI
''' % {'ns8': 8 * NS}
for p in range(8):
    e('VMOVDQU64 %d(R8), Z%d' % (256*p, 16 + 2*p))
    e('VMOVDQU64 %d(R8), Z%d' % (256*p + 128, 17 + 2*p))
e('VPBROADCASTQ thr+24(FP), Z9')
e('VPXORQ Z8, Z8, Z8')
c('Prepare superstep 0 into the half at DI.')
e('XORQ $512, DI')
prep()
e('XORQ $512, DI')
c('Warm-up superstep: hash without testing.')
superstep(False, 'warm')
e('VPTERNLOGQ $0xFF, Z15, Z15, Z15')
e('VPTERNLOGQ $0xFF, Z14, Z14, Z14')
lab('loop')
superstep(True, 'scan')
e('JNZ loop')
c('Vector lanes: odd dwords are the high halves of the hashes.')
e('VPMINUD Z14, Z15, Z15')
e('MOVL thrHi+64(FP), AX')
e('VPBROADCASTD AX, Z10')
e('VPCMPUD $1, Z10, Z15, K3')
e('KMOVW K3, AX')
e('MOVL $0xaaaa, BX')
e('PEXTL BX, AX, AX')
e('MOVBQZX 8(SP), BX')
e('SHLQ $8, BX')
e('ORQ BX, AX')
e('MOVBQZX 9(SP), BX')
e('SHLQ $9, BX')
e('ORQ BX, AX')
e('MOVQ AX, ret+72(FP)')
e('VZEROUPPER')
e('RET')
out.append('')
c('Scalar hits: flag the lane and resume.')
sys.stdout.write(HDR + '\n'.join(out) + '\n' + '\n'.join(stubs) + '\n')
