# Adds every listed subdirectory that has a CMakeLists.txt (layers are grown independently).
function(mailscan_add_subdirs)
  foreach(dir IN LISTS ARGN)
    if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${dir}/CMakeLists.txt")
      add_subdirectory(${dir})
    endif()
  endforeach()
endfunction()

# mailscan_add_catch_test(NAME SOURCES a.cpp b.cpp LIBS lib1 lib2 [LABELS unit])
# One Catch2 executable; each TEST_CASE becomes one CTest test (catch_discover_tests).
function(mailscan_add_catch_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} Catch2::Catch2WithMain mailscan_warnings)
  target_compile_definitions(${name} PRIVATE
    MAILSCAN_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    MAILSCAN_CORPUS_DIR="${MAILSCAN_CORPUS_DIR}"
    MAILSCAN_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  # `ninja unit_tests` builds every unit-test executable (the sanitizer stage needs no more).
  if("unit" IN_LIST T_LABELS)
    if(NOT TARGET unit_tests)
      add_custom_target(unit_tests)
    endif()
    add_dependencies(unit_tests ${name})
  endif()
  # --warn NoTests: a CTest entry whose name no longer selects its TEST_CASE (a ';' or '['
  # in the name, a rename) fails instead of passing with zero tests run.
  catch_discover_tests(${name}
    TEST_PREFIX "${name}:"
    EXTRA_ARGS --warn NoTests
    PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "${MAILSCAN_TEST_ENV}"
    DISCOVERY_TIMEOUT 60)
endfunction()
