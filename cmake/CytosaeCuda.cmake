# After find_package(Torch): does this LibTorch have CUDA, and can we link it?
# Sets CYTOSAE_TORCH_HAS_CUDA. With CYTOSAE_CUDA=ON a LibTorch without CUDA is an error, so a
# GPU build cannot silently come out CPU-only (docs/install-cluster-gpu.md has the recipe).

if(TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
    set(CYTOSAE_TORCH_HAS_CUDA ON)
else()
    set(CYTOSAE_TORCH_HAS_CUDA OFF)
endif()

if(CYTOSAE_CUDA AND NOT CYTOSAE_TORCH_HAS_CUDA)
    message(FATAL_ERROR "CYTOSAE_CUDA is ON but the LibTorch found at ${Torch_DIR} has no CUDA support. "
        "Point Torch_DIR at a CUDA LibTorch: the official archive (libtorch/share/cmake/Torch) or the one of a "
        "PyTorch installation ($(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')/Torch).")
endif()

# PyTorch wheels before 2.7 and the "pre-cxx11 ABI" LibTorch archives use the old libstdc++ ABI,
# which cannot be mixed with Qt, OpenCV and the rest of the system in one program.
if(TORCH_CXX_FLAGS MATCHES "_GLIBCXX_USE_CXX11_ABI=0")
    message(FATAL_ERROR "The LibTorch at ${Torch_DIR} uses the old C++ ABI (_GLIBCXX_USE_CXX11_ABI=0), which cannot "
        "be linked with the system's Qt and OpenCV. Use the 'cxx11 ABI' LibTorch archive, or PyTorch >= 2.7.")
endif()

message(STATUS "LibTorch ${Torch_VERSION}: CUDA ${CYTOSAE_TORCH_HAS_CUDA}")
