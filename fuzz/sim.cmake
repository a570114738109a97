# Included from fuzz/CMakeLists.txt: the simulator's server-side MIME splitter (it reads any
# .eml file it is given, --eml-dir), instrumented like the parsers above.
add_library(mailscan_sim_mime_fuzzing STATIC "${PROJECT_SOURCE_DIR}/bench/simulator/mime_structure.cpp")
target_include_directories(mailscan_sim_mime_fuzzing PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(mailscan_sim_mime_fuzzing PRIVATE
  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
mailscan_add_fuzzer(sim_mime_structure_fuzz
  SOURCES "${CMAKE_CURRENT_SOURCE_DIR}/sim_mime_structure_fuzz.cpp"
  LIBS mailscan_sim_mime_fuzzing)
