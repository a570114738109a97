# OAuth fuzz targets (included by fuzz/CMakeLists.txt): the token endpoint's answer and the
# sealed-secret decoder, both fed by a hostile or broken server / file.
mailscan_add_fuzzer(oauth_token_fuzz
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/oauth_token_fuzz.cpp
          ${PROJECT_SOURCE_DIR}/core/oauth_token.cpp
          ${PROJECT_SOURCE_DIR}/core/secret_box.cpp
  LIBS mailscan_common nlohmann_json::nlohmann_json OpenSSL::Crypto fmt::fmt)
