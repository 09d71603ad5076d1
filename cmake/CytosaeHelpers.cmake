# Project-wide helpers: warnings and sanitizers per target, one function per test.

function(cytosae_target_defaults target)
    target_compile_options(${target} PRIVATE -Wall -Wextra)
    if(CYTOSAE_CLANG_TIDY)
        find_program(CYTOSAE_CLANG_TIDY_EXE NAMES clang-tidy clang-tidy-14 REQUIRED)
        set_target_properties(${target} PROPERTIES CXX_CLANG_TIDY "${CYTOSAE_CLANG_TIDY_EXE};--quiet")
    endif()
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE" AND TARGET cytosae_process_init)
        # Passive OpenMP waiting before any library starts (core/common/ProcessInit.cpp).
        target_link_libraries(${target} PRIVATE cytosae_process_init)
    endif()
    if(CYTOSAE_FUZZ)
        # Coverage for libFuzzer and the sanitizers in every library a fuzz target links.
        target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
    endif()
    if(CYTOSAE_SANITIZE)
        target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
        target_link_options(${target} PRIVATE -fsanitize=address,undefined)
    endif()
endfunction()

# cytosae_add_test(<name> SOURCES <files...> LIBS <targets...> [GUI] [LABELS <labels...>] [TIMEOUT <s>])
# Qt Test executables; GUI tests run on the offscreen platform.
function(cytosae_add_test name)
    cmake_parse_arguments(T "GUI" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
    add_executable(${name} ${T_SOURCES})
    set_target_properties(${name} PROPERTIES AUTOMOC ON)
    target_link_libraries(${name} PRIVATE Qt6::Test ${T_LIBS})
    target_compile_definitions(${name} PRIVATE
        CYTOSAE_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data"
        CYTOSAE_BINARY_DIR="${PROJECT_BINARY_DIR}")
    cytosae_target_defaults(${name})
    add_test(NAME ${name} COMMAND ${name})
    # Generous limits: CI may run on a developer's busy machine, and a test that is slow
    # there has not failed. Qt's own per-function watchdog (300 s by default) follows.
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 1200)
    endif()
    math(EXPR qt_function_ms "${T_TIMEOUT} * 1000")
    set(env "QTEST_FUNCTION_TIMEOUT=${qt_function_ms}")
    if(T_GUI)
        list(APPEND env "QT_QPA_PLATFORM=offscreen")
        list(APPEND T_LABELS gui)
    else()
        list(APPEND T_LABELS unit)
    endif()
    set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}" ENVIRONMENT "${env}")
endfunction()
