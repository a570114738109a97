# `ticket comment` and `outbox` (apps/mailscan/mail_commands.hpp). Included from CMakeLists.txt.
target_sources(mailscan PRIVATE mail_commands.cpp)
target_link_libraries(mailscan PRIVATE mailscan_mail)
