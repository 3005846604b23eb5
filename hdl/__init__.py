"""Amaranth 0.5 gateware of the accelerator: the fixed-point engine's step in hardware, bit for bit.

Read in this order (the data path from a stream word to a weight written back in block RAM):

  top.py      Accelerator: AXI4-Lite registers (hw_interface.Reg) and AXI4-Stream words in / results out
  core.py     Core: decodes the words and sequences each step (learning signals, completions, deliveries,
              neurons, readouts), driving the components below
  spikes.py   SpikeLists (who spiked in step t - 1), CompletionQueue (walks due at the cutoff)
  lane.py     UpdateLane: one lane's synapse / trace / history memories, input accumulators and the e-prop
              update pipeline (walk, gradient descent, transmission, decay)
  neuron.py   RecurrentNeurons: eprop_iaf's update, one neuron per clock
  arith.py    the contract's rounding and saturation as Amaranth expressions
  memory.py   what the memories share: the collision check (COLLISION_X) and the KEEP mark for synthesis
  params.py   every size, width and constant, from the config through golden_model.hw_contract
  build.py    Verilog (generated, never committed) and the simulation wrapper
"""
