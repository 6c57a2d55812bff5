# pnn_library(<name> SOURCES ... DEPS ...): one library per folder, exported as pnn::<name>.
# LibTorch's headers are compiled once per target as a precompiled header: one
# translation unit with <torch/torch.h> costs ~20 s and ~1.2 GB.
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

function(pnn_torch_pch target)
  target_precompile_headers(${target} PRIVATE <torch/torch.h>)
endfunction()

# pnn_example(<name> <source> [PLAIN] [REUSE_PCH <target>]): an example program on
# the public API. PLAIN: it includes no LibTorch header (no precompiled header);
# REUSE_PCH: use that target's precompiled header instead of compiling another.
function(pnn_example name source)
  cmake_parse_arguments(ARG "PLAIN" "REUSE_PCH" "" ${ARGN})
  add_executable(${name} ${source})
  target_link_libraries(${name} PRIVATE pnn::runtime pnn_warnings)
  if(ARG_REUSE_PCH)
    target_precompile_headers(${name} REUSE_FROM ${ARG_REUSE_PCH})
  elseif(NOT ARG_PLAIN)
    pnn_torch_pch(${name})
  endif()
endfunction()
