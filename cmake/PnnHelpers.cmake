# pnn_library(<name> SOURCES ... DEPS ...): one library per folder, exported as pnn::<name>.
# LibTorch's headers are compiled once for the whole build as a precompiled header
# (pnn_torch_pch below): one translation unit with <torch/torch.h> costs ~20 s and
# ~1.2 GB, and the header itself ~40 s.
function(pnn_library name)
  cmake_parse_arguments(ARG "TORCH_PCH" "" "SOURCES;DEPS;PLAIN_SOURCES" ${ARGN})
  add_library(pnn_${name} ${ARG_SOURCES} ${ARG_PLAIN_SOURCES})
  # Sources that never include LibTorch skip the 570 MB precompiled header (~9 s each).
  if(ARG_PLAIN_SOURCES)
    set_source_files_properties(${ARG_PLAIN_SOURCES} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
  endif()
  add_library(pnn::${name} ALIAS pnn_${name})
  set_target_properties(pnn_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME pnn_${name})
  target_include_directories(pnn_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(pnn_${name} PUBLIC ${ARG_DEPS} PRIVATE $<BUILD_INTERFACE:pnn_warnings>)
  if(ARG_TORCH_PCH)
    pnn_torch_pch(pnn_${name})
  endif()
  install(TARGETS pnn_${name} EXPORT pnnTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# The one precompiled <torch/torch.h> (built once; every target that includes LibTorch
# reuses it instead of compiling its own, which took ~40 s and 570 MB each, 8 times).
# GCC refuses a precompiled header made with another -fpie/-fpic setting (it then
# silently parses the header again): the header is built -fPIC like the libraries,
# and executables that reuse it compile -fPIC too (last flag wins over CMake's -fPIE).
function(pnn_torch_pch_target)
  file(WRITE ${CMAKE_BINARY_DIR}/pnn_torch_pch.cpp "// The precompiled <torch/torch.h> of the build.\n")
  add_library(pnn_torch_pch OBJECT ${CMAKE_BINARY_DIR}/pnn_torch_pch.cpp)
  set_target_properties(pnn_torch_pch PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_link_libraries(pnn_torch_pch PRIVATE ${TORCH_LIBRARIES})
  target_compile_options(pnn_torch_pch PRIVATE -Winvalid-pch)
  target_precompile_headers(pnn_torch_pch PRIVATE <torch/torch.h>)
endfunction()

function(pnn_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM pnn_torch_pch)
  # A stale or mismatched header is a warning, not a silent 20 s per source.
  target_compile_options(${target} PRIVATE -Winvalid-pch)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
endfunction()

# pnn_example(<name> <source> [PLAIN]): an example program on the public API.
# PLAIN: it includes no LibTorch header (no precompiled header).
function(pnn_example name source)
  cmake_parse_arguments(ARG "PLAIN" "" "" ${ARGN})
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE pnn::runtime pnn_warnings)
  if(NOT ARG_PLAIN)
    pnn_torch_pch(${name})
  endif()
endfunction()
