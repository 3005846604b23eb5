"""From gateware to hardware: Verilog export, Yosys reports, the ECP5 open flow, Vivado projects for PYNQ boards.

Not written yet (issue "Firmware: Verilog, resource and timing reports, and bitstreams").
"""
