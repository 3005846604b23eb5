// The simulated board's C side: the Verilated accelerator top (eprop_accel) with the clock toggled here, an
// AXI4-Lite master (one read or write at a time) and a model of the AXI DMA's two channels (MM2S: words from a
// buffer onto s_axis, TLAST on the last word of each transfer; S2MM: m_axis into a buffer, a transfer ends at
// TLAST or when the buffer is full). Everything runs on one clock: a register access in progress, both DMA
// channels and the accelerator advance together. Loaded from Python with ctypes (sim/board.py); no cocotb.
//
// Faults the tests inject: input blocked (the accelerator never sees valid data: a stalled link), and MM2S
// pacing (the DMA presents data `burst` cycles out of every `burst + gap`).

#include <cstdint>

#include "Veprop_accel.h"
#include "verilated.h"

namespace {

enum Op { OP_NONE = 0, OP_WRITE = 1, OP_READ = 2 };

struct Board {
    VerilatedContext* ctx;
    Veprop_accel* top;
    uint64_t cycle = 0;
    // MM2S
    const uint32_t* tx = nullptr;
    uint64_t tx_n = 0, tx_pos = 0;
    bool tx_active = false;
    uint32_t tx_burst = 0, tx_gap = 0;
    uint64_t tx_phase = 0;
    bool block_input = false;
    // S2MM
    uint32_t* rx = nullptr;
    uint64_t rx_cap = 0, rx_pos = 0;
    bool rx_active = false, rx_last = false;
    // AXI4-Lite
    int op = OP_NONE;
    bool aw_done = false, w_done = false, ar_done = false;
    uint32_t addr = 0, wdata = 0, rdata = 0;
    // cycles with data offered by MM2S and not taken; with S2MM armed and nothing arriving
    uint64_t tx_wait = 0, rx_wait = 0;
};

void tick(Board* b) {
    Veprop_accel* t = b->top;
    bool paused = b->tx_gap && (b->tx_phase % (uint64_t(b->tx_burst) + b->tx_gap)) >= b->tx_burst;
    bool tx_valid = b->tx_active && !paused && !b->block_input;
    t->s_axis_tvalid = tx_valid;
    t->s_axis_tdata = tx_valid ? b->tx[b->tx_pos] : 0;
    t->s_axis_tlast = tx_valid && b->tx_pos + 1 == b->tx_n;
    t->m_axis_tready = b->rx_active;
    t->s_axi_awvalid = b->op == OP_WRITE && !b->aw_done;
    t->s_axi_awaddr = b->addr;
    t->s_axi_wvalid = b->op == OP_WRITE && !b->w_done;
    t->s_axi_wdata = b->wdata;
    t->s_axi_wstrb = 0xF;
    t->s_axi_bready = b->op == OP_WRITE;
    t->s_axi_arvalid = b->op == OP_READ && !b->ar_done;
    t->s_axi_araddr = b->addr;
    t->s_axi_rready = b->op == OP_READ;
    t->clk = 0;
    t->eval();
    // handshakes, sampled before the rising edge
    bool tx_fire = tx_valid && t->s_axis_tready;
    bool rx_fire = b->rx_active && t->m_axis_tvalid;
    uint32_t rx_data = t->m_axis_tdata;
    bool rx_tlast = t->m_axis_tlast;
    bool aw_fire = t->s_axi_awvalid && t->s_axi_awready;
    bool w_fire = t->s_axi_wvalid && t->s_axi_wready;
    bool b_fire = t->s_axi_bready && t->s_axi_bvalid;
    bool ar_fire = t->s_axi_arvalid && t->s_axi_arready;
    bool r_fire = t->s_axi_rready && t->s_axi_rvalid;
    uint32_t r_data = t->s_axi_rdata;
    t->clk = 1;
    t->eval();
    b->cycle++;
    if (b->tx_active) {
        b->tx_phase++;
        if (!tx_fire) b->tx_wait++;
    }
    if (tx_fire && ++b->tx_pos == b->tx_n) b->tx_active = false;
    if (b->rx_active && !rx_fire) b->rx_wait++;
    if (rx_fire) {
        b->rx[b->rx_pos++] = rx_data;
        if (rx_tlast || b->rx_pos == b->rx_cap) {
            b->rx_active = false;
            b->rx_last = rx_tlast;
        }
    }
    if (aw_fire) b->aw_done = true;
    if (w_fire) b->w_done = true;
    if (ar_fire) b->ar_done = true;
    if (b_fire && b->op == OP_WRITE) b->op = OP_NONE;
    if (r_fire && b->op == OP_READ) {
        b->rdata = r_data;
        b->op = OP_NONE;
    }
}

}  // namespace

extern "C" {

void* board_new() {
    Board* b = new Board();
    b->ctx = new VerilatedContext();
    b->top = new Veprop_accel(b->ctx, "eprop_accel");
    b->top->clk = 0;
    b->top->rst = 0;
    b->top->eval();
    return b;
}

void board_free(void* p) {
    Board* b = static_cast<Board*>(p);
    b->top->final();
    delete b->top;
    delete b->ctx;
    delete b;
}

// until: bit 0 the MM2S transfer is done, bit 1 the S2MM transfer is done, bit 2 the register access is done,
// bit 3 the accelerator's irq (idle) is high; 0 runs max_cycles. Returns the cycles run.
uint64_t board_run(void* p, uint64_t max_cycles, int until) {
    Board* b = static_cast<Board*>(p);
    uint64_t n = 0;
    while (n < max_cycles) {
        if (until) {
            if ((until & 1) && !b->tx_active) break;
            if ((until & 2) && !b->rx_active) break;
            if ((until & 4) && b->op == OP_NONE) break;
            if ((until & 8) && b->top->irq) break;
        }
        tick(b);
        n++;
    }
    return n;
}

void board_reset(void* p, uint64_t cycles) {
    Board* b = static_cast<Board*>(p);
    b->tx_active = b->rx_active = false;
    b->op = OP_NONE;
    b->top->rst = 1;
    board_run(p, cycles, 0);
    b->top->rst = 0;
}

uint64_t board_cycle(void* p) { return static_cast<Board*>(p)->cycle; }
int board_irq(void* p) { return static_cast<Board*>(p)->top->irq; }

// a register write: 0 once the write response arrived, -1 if it did not within max_cycles (the access is then
// abandoned, as a bus timeout would)
int board_write(void* p, uint32_t addr, uint32_t data, uint64_t max_cycles) {
    Board* b = static_cast<Board*>(p);
    b->op = OP_WRITE;
    b->addr = addr;
    b->wdata = data;
    b->aw_done = b->w_done = false;
    board_run(p, max_cycles, 4);
    if (b->op != OP_NONE) {
        b->op = OP_NONE;
        return -1;
    }
    return 0;
}

int board_read(void* p, uint32_t addr, uint32_t* data, uint64_t max_cycles) {
    Board* b = static_cast<Board*>(p);
    b->op = OP_READ;
    b->addr = addr;
    b->ar_done = false;
    board_run(p, max_cycles, 4);
    if (b->op != OP_NONE) {
        b->op = OP_NONE;
        return -1;
    }
    *data = b->rdata;
    return 0;
}

void board_tx_start(void* p, const uint32_t* words, uint64_t n) {
    Board* b = static_cast<Board*>(p);
    b->tx = words;
    b->tx_n = n;
    b->tx_pos = 0;
    b->tx_phase = 0;
    b->tx_active = n > 0;
}

void board_rx_start(void* p, uint32_t* words, uint64_t capacity) {
    Board* b = static_cast<Board*>(p);
    b->rx = words;
    b->rx_cap = capacity;
    b->rx_pos = 0;
    b->rx_last = false;
    b->rx_active = capacity > 0;
}

// channel state: active?, words moved so far (and for S2MM whether the transfer ended with TLAST)
int board_tx_state(void* p, uint64_t* pos) {
    Board* b = static_cast<Board*>(p);
    *pos = b->tx_pos;
    return b->tx_active;
}

int board_rx_state(void* p, uint64_t* pos, int* last) {
    Board* b = static_cast<Board*>(p);
    *pos = b->rx_pos;
    *last = b->rx_last;
    return b->rx_active;
}

void board_tx_stop(void* p) { static_cast<Board*>(p)->tx_active = false; }
void board_rx_stop(void* p) { static_cast<Board*>(p)->rx_active = false; }

void board_block_input(void* p, int on) { static_cast<Board*>(p)->block_input = on != 0; }

void board_tx_pacing(void* p, uint32_t burst, uint32_t gap) {
    Board* b = static_cast<Board*>(p);
    b->tx_burst = burst;
    b->tx_gap = gap;
}

void board_wait_cycles(void* p, uint64_t* tx_wait, uint64_t* rx_wait) {
    Board* b = static_cast<Board*>(p);
    *tx_wait = b->tx_wait;
    *rx_wait = b->rx_wait;
}

}  // extern "C"
