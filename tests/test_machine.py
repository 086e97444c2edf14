"""The machine core in-process, against the Arm ARM's pseudocode and Linux's structures:
the MTE instructions (mte_insns.py, and _native.c where built), tag checks and the undo
log that makes a synchronous fault precise (tagcheck.settle), the kernel's tag-checked
uaccess, and the rt_sigframe layout. Each runs in milliseconds: this is the fast layer."""
from __future__ import annotations

import struct

import pytest
from machine_world import DATA_VA, World

from mteemu.board.model import default_board
from mteemu.kernel import sigframe
from mteemu.kernel.kernel import Kernel
from mteemu.kernel.mm.vma import PROT_MTE, PROT_READ, PROT_WRITE, Vma
from mteemu.kernel.run import RunOptions
from mteemu.kernel.uaccess import SyscallError, UserMemory
from mteemu.machine import arm64 as C
from mteemu.machine import native
from mteemu.machine.tagcheck import MteState, Tcf

# Encodings from aarch64-linux-gnu-as -march=armv8.5-a+memtag.
IRG = 0x9AC21020           # irg   x0, x1, x2
GMI = 0x9AC41423           # gmi   x3, x1, x4
ADDG = 0x91810C25          # addg  x5, x1, #16, #3
SUBG = 0xD1820826          # subg  x6, x1, #32, #2
SUBP = 0x9AC80027          # subp  x7, x1, x8
SUBPS = 0xBAC80027         # subps x7, x1, x8
LDG = 0xD9601029           # ldg   x9, [x1, #16]
STG = 0xD9200821           # stg   x1, [x1]
ST2G = 0xD9A02821          # st2g  x1, [x1, #32]
STZG = 0xD9604821          # stzg  x1, [x1, #64]
STGP = 0x69032C2A          # stgp  x10, x11, [x1, #96]
DC_GVA = 0xD50B7461        # dc    gva, x1
STG_X12 = 0xD9200981       # stg   x1, [x12]
STP = 0xA900AC2A           # stp   x10, x11, [x1, #8]
LDR = 0xF940002D           # ldr   x13, [x1]

PATHS = [True] + ([False] if native.available() else [])


@pytest.fixture(scope="module", params=PATHS, ids=lambda pure: "python" if pure else "native")
def world(request):
    mp = pytest.MonkeyPatch()
    try:
        yield World(pure=request.param, monkeypatch=mp)
    finally:
        mp.undo()


def run(world: World, words: "int | list[int]", regs: dict[int, int], tags: bytes = bytes(384),
        tcf: Tcf = Tcf.SYNC, exclude: int = 0, tco: bool = False, data: bytes = bytes(4 * 4096)) -> dict:
    r = [0] * 31
    for n, v in regs.items():
        r[n] = v
    world.cpu.seed_irg(1)
    world.load(words, r, DATA_VA + 0x800, 0, data, tags, MteState(tcf_read=tcf, tcf_write=tcf, exclude=exclude, tco=tco))
    return world.run()


def tag(p: int) -> int:
    return p >> 56 & 0xF


def granule_tags(out: dict, first: int, n: int) -> list[int]:
    return [(out["tags"][g >> 1] >> ((g & 1) * 4)) & 0xF for g in range(first, first + n)]


def with_tag(addr: int, t: int) -> int:
    return addr | t << 56


# -- the MTE instructions -----------------------------------------------------------------------
def test_irg_chooses_only_tags_not_excluded(world: World) -> None:
    for keep in (1, 7, 15):
        out = run(world, IRG, {1: with_tag(DATA_VA, 9), 2: 0xFFFF & ~(1 << keep)})
        assert out["kind"] is C.ExitKind.BREAKPOINT
        assert out["regs"][0] == with_tag(DATA_VA, keep)            # the address bits are Xn's
    out = run(world, IRG, {1: DATA_VA, 2: 0xFFFF})                   # everything excluded: tag 0
    assert out["regs"][0] == DATA_VA
    out = run(world, IRG, {1: DATA_VA, 2: 0}, exclude=0xFFFF & ~(1 << 4))   # GCR_EL1.Exclude too
    assert tag(out["regs"][0]) == 4


def test_gmi_addg_subg(world: World) -> None:
    out = run(world, [GMI, ADDG, SUBG], {1: with_tag(DATA_VA + 64, 5), 4: 1})
    x = out["regs"]
    assert x[3] == 1 | 1 << 5                                         # GMI: Xm | 1 << tag
    assert x[5] == with_tag(DATA_VA + 64 + 16, 8)                     # ADDG: +16, tag 5 + 3
    assert x[6] == with_tag(DATA_VA + 64 - 32, 7)                     # SUBG: -32, tag 5 + 2 (the offset adds)
    # ChooseNonExcludedTag(): an excluded result moves on to the next allowed tag.
    out = run(world, ADDG, {1: with_tag(DATA_VA, 5)}, exclude=1 << 8 | 1 << 9)
    assert tag(out["regs"][5]) == 10


def test_subp_ignores_tags_and_subps_sets_flags(world: World) -> None:
    out = run(world, SUBP, {1: with_tag(DATA_VA + 0x40, 3), 8: with_tag(DATA_VA, 9)})
    assert out["regs"][7] == 0x40
    out = run(world, SUBPS, {1: DATA_VA, 8: with_tag(DATA_VA, 1)})
    assert out["regs"][7] == 0 and out["nzcv"] == 0x6000_0000          # Z and C


def test_tag_stores_and_ldg(world: World) -> None:
    p = with_tag(DATA_VA, 6)
    data = bytes(range(256)) * 64
    out = run(world, [STG, ST2G, STZG, STGP, LDG], {1: p, 10: 0x1111, 11: 0x2222}, data=data)
    assert granule_tags(out, 0, 8) == [6, 0, 6, 6, 6, 0, 6, 0]         # STG 0, ST2G 2-3, STZG 4, STGP 6
    assert out["memory"][64:80] == bytes(16)                           # STZG zeroes its granule
    assert out["memory"][0:16] == data[0:16]                           # STG leaves data alone
    assert struct.unpack_from("<QQ", out["memory"], 96) == (0x1111, 0x2222)
    assert out["regs"][9] == 0                                          # LDG of granule 1 (tag 0) into x9 = 0


def test_ldg_loads_the_allocation_tag(world: World) -> None:
    tags = bytearray(384)
    tags[0] = 0x70                                                      # granule 1 has tag 7
    out = run(world, LDG, {1: DATA_VA, 9: with_tag(DATA_VA + 0x123, 2)}, tags=bytes(tags))
    assert out["regs"][9] == with_tag(DATA_VA + 0x123, 7)              # only the tag bits change


def test_dc_gva_tags_a_whole_block(world: World) -> None:
    out = run(world, DC_GVA, {1: with_tag(DATA_VA + 0x48, 0xB)})
    assert granule_tags(out, 4, 4) == [0xB] * 4 and granule_tags(out, 0, 4) == [0] * 4   # 64-byte block


def test_unaligned_tag_store_is_an_alignment_fault(world: World) -> None:
    out = run(world, STG_X12, {1: with_tag(DATA_VA, 3), 12: DATA_VA + 8})
    assert out["kind"] is C.ExitKind.ALIGNMENT and granule_tags(out, 0, 2) == [0, 0]


# -- tag checks and the undo log ----------------------------------------------------------------------
def test_sync_store_fault_is_precise(world: World) -> None:
    """STP over granules 0 (tag 5, matching) and 1 (tag 0): Unicorn has already written the
    first half when the hook sees the second; settle() must put every byte back."""
    tags = bytearray(384)
    tags[0] = 0x05
    data = bytes(range(256)) * 64
    out = run(world, STP, {1: with_tag(DATA_VA, 5), 10: 0xAAAA_AAAA_AAAA_AAAA, 11: 0xBBBB_BBBB_BBBB_BBBB},
              tags=bytes(tags), data=data)
    assert out["kind"] is C.ExitKind.TAG_CHECK
    va, write, _size, ptr_tag, mem_tag, sync = out["mismatch"]
    assert (va, write, ptr_tag, mem_tag, sync) == (with_tag(DATA_VA + 16, 5), True, 5, 0, True)
    assert out["memory"][:4096] == data[:4096]                          # nothing written
    assert out["pc"] == 0x40_0000                                       # at the STP, not past it


def test_async_store_completes_and_tco_suppresses(world: World) -> None:
    tags = bytearray(384)
    tags[0] = 0x05
    out = run(world, STP, {1: with_tag(DATA_VA, 5), 10: 1, 11: 2}, tags=bytes(tags), tcf=Tcf.ASYNC)
    assert out["kind"] is C.ExitKind.TAG_CHECK and out["mismatch"][5] is False
    assert struct.unpack_from("<QQ", out["memory"], 8) == (1, 2)       # async: the store happened
    out = run(world, LDR, {1: with_tag(DATA_VA, 9)}, tco=True)          # PSTATE.TCO: no check
    assert out["kind"] is C.ExitKind.BREAKPOINT


# -- uaccess: the kernel's view of user memory ------------------------------------------------------
@pytest.fixture
def user():
    k = Kernel(default_board(), RunOptions())
    mm = k.new_mm()
    mm.map(Vma(0x1000_0000, 0x1000_2000, PROT_READ | PROT_WRITE | PROT_MTE, mte_allowed=True))
    mem = UserMemory(mm)
    mem.write(0x1000_0000, bytes(range(64)))
    pa = mm.fault(0x1000_0000, C.ACCESS_WRITE)[0]
    k.tags.set_range(pa, 32, 3)                          # granules 0-1 tag 3, the rest 0
    yield mem
    k.shutdown()


def test_uaccess_follows_the_tagged_address_abi(user: UserMemory) -> None:
    with pytest.raises(SyscallError):                    # a tagged pointer without the ABI: not a user address
        user.read(with_tag(0x1000_0000, 3), 4)
    user.tagged_addr_abi = True
    assert user.read(with_tag(0x1000_0000, 3), 4) == bytes(range(4))


def test_uaccess_checks_tags_and_stops_short(user: UserMemory) -> None:
    user.tagged_addr_abi = True
    user.check_reads = True
    assert user.read(with_tag(0x1000_0000, 3), 32) == bytes(range(32))
    with pytest.raises(SyscallError):
        user.read(with_tag(0x1000_0000, 3), 33)          # the 33rd byte is in a tag-0 granule
    # copy_to_user's short count: the bytes before the first mismatching granule.
    assert user.accessible(with_tag(0x1000_0008, 3), 100, write=False) == 24


# -- the signal frame ---------------------------------------------------------------------------------
def test_rt_sigframe_layout_is_linuxs() -> None:
    state = sigframe.CpuState(x=list(range(100, 131)), sp=0x7000, pc=0x40_1234,
                              pstate=0x6000_0000 | sigframe.PSTATE_TCO, v=[i << 64 | i for i in range(32)],
                              fpsr=0x10, fpcr=0x300_0000)
    frame = sigframe.build(bytes(range(128)), state, 0x8001, (0x9000, 0, 0x4000), 0xDEAD, 0x9200_0011)
    # struct rt_sigframe: siginfo (128) + ucontext (4560), arch/arm64/include/uapi/asm/{ucontext,sigcontext}.h
    assert len(frame) == 4688
    assert frame[:128] == bytes(range(128))
    assert struct.unpack_from("<QiiQ", frame, 128 + 16) == (0x9000, 0, 0, 0x4000)      # uc_stack
    assert struct.unpack_from("<Q", frame, 128 + 40)[0] == 0x8001                     # uc_sigmask
    assert struct.unpack_from("<Q", frame, 304)[0] == 0xDEAD                          # fault_address
    assert list(struct.unpack_from("<31Q", frame, 312)) == state.x
    assert struct.unpack_from("<QQQ", frame, 560) == (0x7000, 0x40_1234, state.pstate)
    magic, size, fpsr, fpcr = struct.unpack_from("<IIII", frame, 592)                 # __reserved, 16-aligned
    assert (magic, size, fpsr, fpcr) == (0x46508001, 528, 0x10, 0x300_0000)
    assert int.from_bytes(frame[608 + 16 * 31:608 + 16 * 32], "little") == 31 << 64 | 31
    assert struct.unpack_from("<IIQ", frame, 592 + 528) == (0x45535201, 16, 0x9200_0011)   # esr_context
    assert struct.unpack_from("<II", frame, 592 + 528 + 16) == (0, 0)                     # the terminator
    back, mask = sigframe.parse(frame)
    assert (back, mask) == (state, 0x8001)


# -- the layering ----------------------------------------------------------------------------------
def test_unicorn_stays_in_the_machine_and_the_machine_knows_no_kernel() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "mteemu"
    for path in root.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        if rel.startswith("machine/"):
            assert not re.search(r"^\s*(from|import) mteemu\.(kernel|board\.(dt|rules|binding))", text, re.M), rel
        else:
            assert not re.search(r"^\s*(from|import) unicorn", text, re.M), rel
            assert not re.search(r"\.uc\.|\.uc\b", text), rel             # the CPU's register API instead


def test_proc_sys_vm_min_free_kbytes_reads() -> None:
    """It named an attribute the buddy allocator never had (found by mypy): reading it was
    an internal error. It is the zones' min watermarks in KiB."""
    from mteemu.kernel.fs import procfs

    k = Kernel(default_board(), RunOptions())
    try:
        text = procfs._sys_vm(k)["min_free_kbytes"].read()
        assert int(text) == sum(z.watermark_min for z in k.alloc.buddy.zones) * 4 > 0
    finally:
        k.shutdown()
