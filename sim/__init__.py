"""Simulation flows: Amaranth -> Verilog -> cocotb 2 on Verilator or Icarus, and the simulated board.

Not written yet (issues "Gateware ..." and "PYNQ host driver ..."); the scoreboards will be fed by the fixed-point
engine of ``golden_model``.
"""
