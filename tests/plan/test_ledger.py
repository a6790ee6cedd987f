"""ByteLedger: live and peak bytes per device op by op, host copies, and ops that mix devices."""

from __future__ import annotations

import pytest
import torch

from liveact.plan.ledger import DEVICE, HOST, ByteLedger, PlacementError

F32 = 4


def test_live_and_peak_follow_allocations_and_frees() -> None:
    ledger = ByteLedger()
    with ledger:
        a = torch.empty(1000, device="meta")  # 4000 B
        b = a * 2  # 4000 B more
        view = b[10:]  # a view: no new storage
        assert ledger.live[DEVICE] == 2000 * F32
        del a, b
        assert ledger.live[DEVICE] == 1000 * F32  # b's storage lives on through the view
        del view
        assert ledger.live[DEVICE] == 0
        c = torch.empty(3000, device="meta")
        assert ledger.live[DEVICE] == 3000 * F32
    assert ledger.peak[DEVICE] == 3000 * F32
    assert ledger.peak[HOST] == 0
    del c


def test_phase_records_its_own_peak() -> None:
    ledger = ByteLedger()
    with ledger:
        keep = torch.empty(100, device="meta")
        with ledger.phase("temporaries") as p:
            for _ in range(3):
                t = torch.empty(50, device="meta")
                del t
    assert (p.start[DEVICE], p.peak[DEVICE]) == (100 * F32, 150 * F32)
    del keep


def test_memoised_ops_allocate_like_the_kernel() -> None:
    """The same op on the same metadata twice is answered from the memo; the bytes are the kernel's."""
    x = torch.empty(64, 128, device="meta", dtype=torch.bfloat16)
    w = torch.empty(256, 128, device="meta", dtype=torch.bfloat16)
    ledger = ByteLedger()
    with ledger:
        ledger.track([x, w])
        outs = [torch.nn.functional.linear(x, w) for _ in range(3)]
    assert all(o.shape == (64, 256) and o.dtype == torch.bfloat16 for o in outs)
    assert ledger.live[DEVICE] == (64 * 128 + 256 * 128 + 3 * 64 * 256) * 2


def test_device_to_host_copy_counts_as_host() -> None:
    ledger = ByteLedger()
    with ledger:
        on_device = torch.empty(256, device="meta")
        copy = on_device.to("cpu", copy=True)
        assert ledger.live == {DEVICE: 256 * F32, HOST: 256 * F32}
        assert (copy * 2).shape == (256,)  # host arithmetic stays host
        assert ledger.live[HOST] == 256 * F32
        del copy
    assert ledger.peak[HOST] == 2 * 256 * F32


def test_mixing_device_and_host_names_the_op_and_the_line() -> None:
    ledger = ByteLedger()
    with ledger:
        on_device = torch.empty(4, 8, device="meta")
        stray = torch.ones(4, 8)  # made on the CPU: a GPU run would fail here
        with pytest.raises(PlacementError, match=r"aten\.add\.Tensor mixes device and host.*\(4, 8\)") as err:
            on_device + stray
        assert "tests/plan/test_ledger.py" in str(err.value)
        assert (on_device * torch.tensor(2.0)).shape == (4, 8)  # a 0-dim host scalar is fine, as on CUDA
        assert stray.to("meta").shape == (4, 8)  # a copy to the device is a transfer, not a mix
