"""Simulation of the gateware against the fixed-point engine: Amaranth's simulator (``amaranth_sim``), and the
generated Verilog under cocotb 2 on Verilator or Icarus (``runner``, ``top``, ``cocotb_tests/``); ``model``
turns a fixed-engine run into what the accelerator must report."""
