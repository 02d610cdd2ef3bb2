"""The CPU backward's weight gradients, dgates^T times the layer's input or its previous
states, take one of three products (csrc/cpu/cpu_backend.h, mm): ATen's BLAS (always where
it takes the whole-sequence products, csrc/cpu/sequence_products.h; else on AVX2 for smaller
products, and in the plain C++ build), our GEMM reading dgates^T in place (AVX-512), or on
AVX2 with a product of at least kByTokenBlocksMinProduct per token, our GEMM over blocks of
tokens of dgates transposed into a buffer (sgemm::gemm_transposed_a); test_cpu_isa.py and
test_cpu_sequence_products.py run this file at each ISA and choice. That last one must give
torch.nn's gradients too: here with gate rows and widths that are not multiples of the
8 x 8 transpose blocks, more tokens than one block (512), plain and packed input (the
packed backward multiplies by the gathered previous states instead of the shifted
outputs), forward and reverse directions."""
import pytest

from helpers import MODES, assert_sequence_matches_torch_nn

# I x (gate rows) >= 2^19 for every cell (RNN: 733 x 727 = 532891); T N = 549 tokens,
# two blocks of 512 and 37; I, H, 3 H and 4 H are not multiples of 8.
T, N, I, H = 9, 61, 727, 733


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("kind", MODES)
def test_large_weight_gradients_match_torch_nn(kind, packed, two_threads):
    assert I * H >= 1 << 19 and T * N > 512 and H % 8 and I % 8
    assert_sequence_matches_torch_nn(kind, T, N, H, I, packed, layers=1, seed=5)
