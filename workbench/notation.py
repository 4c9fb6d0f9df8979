"""The papers' notation as sympy symbols, shared by the node kinds' symbolic rules.

Layer l's input pair (a, b): variances qˡ_a, qˡ_b, covariance Kˡ_ab, NTK Θˡ_ab; the
fully-connected maps use qˡ, cˡ (pabari_zhou eqs. 3–10); pixels α, α′ (xiao2018 §2.1).
"""

from __future__ import annotations

import sympy as sp

q_a, q_b, q = sp.symbols("q^{l}_{a} q^{l}_{b} q^{l}", positive=True)
K, Theta = sp.symbols(r"K^{l}_{ab} \Theta^{l}_{ab}", real=True)
K_next, Theta_next = sp.symbols(r"K^{l+1}_{ab} \Theta^{l+1}_{ab}", real=True)
q_next, c, c_next = sp.symbols("q^{l+1} c^{l} c^{l+1}", real=True)
chi_1 = sp.Symbol(r"\chi_{1}", positive=True)
alpha, alpha2 = sp.symbols(r"\alpha \alpha'", integer=True)
K_in = sp.IndexedBase("K^{l}")  # K^{l}[α, α']: a pixel-pair kernel entry of the pair (a, b)
Theta_in = sp.IndexedBase(r"\Theta^{l}")
T = sp.Function("T")  # T(K)[α, α'] = E[φ(u_α) φ(v_α')] of the realized input
T_dot = sp.Function(r"\dot{T}")
m_x, m_b = sp.symbols("m^{x}_{a} m^{b}_{a}", real=True)
m_x2, m_b2 = sp.symbols("m^{x}_{b} m^{b}_{b}", real=True)
K_x, K_b = sp.symbols("K^{x}_{ab} K^{b}_{ab}", real=True)
Theta_x, Theta_b = sp.symbols(r"\Theta^{x}_{ab} \Theta^{b}_{ab}", real=True)
K_out, Theta_out = sp.symbols(r"K^{out}_{ab} \Theta^{out}_{ab}", real=True)

# backward: G̃_ab = Σ_i E[δ_a,i δ_b,i], δ = ∂L/∂(activity), at a node's input (l) and output
# (l+1); q̃ per unit (xiao2018 eq. 2.15); G̃^b the body's map of its output's G̃ (residual)
G_in, G_out = sp.symbols(r"\tilde{G}^{l}_{ab} \tilde{G}^{l+1}_{ab}", real=True)
G_body = sp.Symbol(r"\tilde{G}^{b}_{ab}", real=True)
q_tilde, q_tilde_next = sp.symbols(r"\tilde{q}^{l} \tilde{q}^{l+1}", positive=True)
G_out_px = sp.IndexedBase(r"\tilde{G}^{l+1}")  # pixel-pair entries of the output's G̃
grad_w = sp.Symbol(r"\|\partial L / \partial W\|^{2}", positive=True)
_m = sp.Symbol("m", positive=True, integer=True)
input_pairs = ((sp.Symbol("a", integer=True), 1, _m), (sp.Symbol("b", integer=True), 1, _m))

# noise (labatie2019 eqs. 1–2): per-unit second moments of the first-order input noise dx at
# a node's input (l) and output (l+1), per input a (and pixel); n^b the body's output noise
n_in, n_out = sp.symbols(r"n^{l}_{a} n^{l+1}_{a}", nonnegative=True)
n_body = sp.Symbol(r"n^{b}_{a}", nonnegative=True)
n_in_px = sp.IndexedBase(r"n^{l}_{a}")  # per-pixel entries of the input's noise
