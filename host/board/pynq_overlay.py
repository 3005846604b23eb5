"""The accelerator as a PYNQ overlay (runs on the board's Python: PYNQ 3.1 on the PYNQ-Z2, PYNQ 4 on Zynq
UltraScale+ boards such as the KV260).

``EpropOverlay("eprop_accel.bit")`` downloads the bitstream (its ``.hwh`` beside it describes the block design),
finds the accelerator by its VLNV (``golden_model.hw_interface.IP_VLNVS``: packaged IP or module reference; :class:`EpropAccelIP` is the
``DefaultIP`` driver pynq binds to it) and the AXI DMA, and hands both to :class:`~host.board.driver.AcceleratorDriver`.
Imports pynq; nothing else beyond numpy and this project's numpy-only modules.
"""

from __future__ import annotations

from pynq import DefaultIP, Overlay, allocate

from golden_model.hw_interface import IP_VLNVS

from .driver import AcceleratorDriver, BoardError

__all__ = ["EpropAccelIP", "EpropOverlay", "allocate", "DMA_VLNV_PREFIX"]

DMA_VLNV_PREFIX = "xilinx.com:ip:axi_dma:"


class EpropAccelIP(DefaultIP):
    """The accelerator's AXI4-Lite registers (``read`` / ``write`` come from ``DefaultIP``)."""

    bindto = list(IP_VLNVS)

    def __init__(self, description):
        super().__init__(description=description)


def _resolve(overlay, full_name: str):
    """The driver object of an IP named ``hier/sub/ip`` in the overlay's ip_dict."""
    obj = overlay
    for part in full_name.split("/"):
        obj = getattr(obj, part)
    return obj


class EpropOverlay(Overlay):
    """The block design: the accelerator (bound by VLNV) and the AXI DMA feeding its streams."""

    def __init__(self, bitfile_name: str, download: bool = True, **kwargs):
        super().__init__(bitfile_name, download=download, **kwargs)
        accels = sorted(name for name, d in self.ip_dict.items() if d.get("type") in IP_VLNVS)
        dmas = sorted(name for name, d in self.ip_dict.items() if str(d.get("type", "")).startswith(DMA_VLNV_PREFIX))
        found = ", ".join(f"{n} ({d.get('type')})" for n, d in self.ip_dict.items()) or "nothing"
        if len(accels) != 1:
            raise BoardError(f"{bitfile_name}: expected one IP of type {' or '.join(IP_VLNVS)} in the .hwh, found "
                             f"{len(accels)}; the design holds: {found}")
        if len(dmas) != 1:
            raise BoardError(f"{bitfile_name}: expected one AXI DMA ({DMA_VLNV_PREFIX}*) in the .hwh, found "
                             f"{len(dmas)}; the design holds: {found}")
        self.accel_name, self.dma_name = accels[0], dmas[0]
        self.accel = _resolve(self, self.accel_name)
        self.dma = _resolve(self, self.dma_name)

    def driver(self, **options) -> AcceleratorDriver:
        return AcceleratorDriver(self.accel, self.dma, allocate, **options)
