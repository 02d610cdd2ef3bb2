"""Builds fused_rnn._C: the CPU kernels always, the CUDA kernels whenever nvcc is found.

FUSED_RNN_CUDA=0/1 forces the CUDA build off/on; TORCH_CUDA_ARCH_LIST picks the GPU
architectures (default below includes sm_90 for H100/H200).
"""
import glob
import os
import shutil
import site
import sys

from setuptools import setup

DEFAULT_CUDA_ARCHS = "8.0;9.0"


def find_cuda_home():
    """The CUDA toolkit folder, also when `nvcc` on PATH is a wrapper script."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        # A wrapper like `exec /usr/local/cuda-13.0/bin/nvcc "$@"` names the real one.
        try:
            with open(nvcc, "r", errors="ignore") as f:
                for word in f.read(4096).split():
                    if word.endswith("/bin/nvcc"):
                        candidates.append(os.path.dirname(os.path.dirname(word)))
        except OSError:
            pass
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isfile(
            os.path.join(home, "include", "cuda_runtime.h")
        ):
            return home
    return None


def want_cuda(cuda_home):
    forced = os.environ.get("FUSED_RNN_CUDA")
    if forced is not None:
        if forced == "1" and cuda_home is None:
            sys.exit("FUSED_RNN_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        return forced == "1"
    return cuda_home is not None


def pip_cuda_include_dirs():
    """Headers that torch's CUDA build includes (cusparse.h, ...) but that pip puts in
    site-packages/nvidia/*/include rather than in the toolkit."""
    dirs = []
    # sys.path too: the site-packages that a .pth file adds (Makefile) are not in getsitepackages().
    roots = site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p]
    for root in dict.fromkeys(roots):
        dirs += sorted(glob.glob(os.path.join(root, "nvidia", "cu*", "include")))
        dirs += sorted(glob.glob(os.path.join(root, "nvidia", "*", "include")))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


cuda_home = find_cuda_home()
use_cuda = want_cuda(cuda_home)
if use_cuda:
    os.environ["CUDA_HOME"] = cuda_home  # read by torch.utils.cpp_extension at import
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_CUDA_ARCHS)

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
sources = ["csrc/fused_rnn.cpp", "csrc/autograd.cpp", "csrc/phase_timer.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
# -fopenmp: at::parallel_for is an inline OpenMP region in ATen's headers; without the flag
# it silently runs on one thread. At run time the libgomp torch has loaded is reused.
cxx_flags = ["-O3", "-std=c++20", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
link_flags = ["-fopenmp"]
if os.environ.get("FUSED_RNN_SANITIZE") == "1":  # `make sanitize`: AddressSanitizer + UBSan
    sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    cxx_flags = [f for f in cxx_flags if f != "-O3"] + ["-O1", "-g"] + sanitizers
    link_flags += sanitizers
define_macros = []
if use_cuda:
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    define_macros.append(("FUSED_RNN_WITH_CUDA", "1"))
    extension = CUDAExtension(
        "fused_rnn._C",
        sources,
        include_dirs=[os.path.join(here, "csrc")] + pip_cuda_include_dirs(),
        define_macros=define_macros,
        extra_link_args=link_flags,
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++20", "--use_fast_math",
                                                       "-Xptxas=-v" if os.environ.get("FUSED_RNN_PTXAS_VERBOSE") else "-lineinfo"]},
    )
else:
    extension = CppExtension(
        "fused_rnn._C",
        sources,
        include_dirs=[os.path.join(here, "csrc")],
        extra_link_args=link_flags,
        extra_compile_args={"cxx": cxx_flags},
    )

print(f"fused_rnn: CUDA kernels {'ON (' + cuda_home + ', archs ' + os.environ['TORCH_CUDA_ARCH_LIST'] + ')' if use_cuda else 'OFF'}")
setup(
    name="fused_rnn",
    version="0.1.0",
    packages=["fused_rnn"],
    ext_modules=[extension],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
