"""Amaranth 0.5 gateware: spike router, neuron core, e-prop update pipeline, counters, AXI top level.

Not written yet (issue "Gateware: Amaranth spike router and e-prop update pipeline"); it will import every width,
address and word layout from the hardware contract in ``golden_model``.
"""
