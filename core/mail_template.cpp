#include "core/mail_template.hpp"

#include <fmt/format.h>

namespace mscan::core {

namespace {

bool tag_char(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

// Calls on_text / on_tag for the pieces of tpl; stops at the first on_tag that returns false.
template <class Text, class Tag>
bool walk(std::string_view tpl, Text on_text, Tag on_tag) {
  std::size_t i = 0;
  while (i < tpl.size()) {
    const auto d = tpl.find('$', i);
    if (d == std::string_view::npos) {
      on_text(tpl.substr(i));
      break;
    }
    on_text(tpl.substr(i, d - i));
    const auto e = tpl.find('$', d + 1);
    const auto name = e == std::string_view::npos ? std::string_view{} : tpl.substr(d + 1, e - d - 1);
    bool is_tag = !name.empty();
    for (char c : name) is_tag = is_tag && tag_char(c);
    if (!is_tag) {
      on_text(tpl.substr(d, 1));
      i = d + 1;
      continue;
    }
    if (!on_tag(name)) return false;
    i = e + 1;
  }
  return true;
}

} // namespace

expected<std::string, std::string> expand_template(
    std::string_view tpl, const std::function<std::optional<std::string>(std::string_view)>& value) {
  std::string out, err;
  walk(
      tpl, [&](std::string_view t) { out += t; },
      [&](std::string_view tag) {
        auto v = value(tag);
        if (!v) {
          err = fmt::format("unknown tag ${}$", tag);
          return false;
        }
        out += *v;
        return true;
      });
  if (!err.empty()) return unexpected{err};
  return out;
}

bool template_uses(std::string_view tpl, std::string_view tag) {
  bool found = false;
  walk(
      tpl, [](std::string_view) {},
      [&](std::string_view t) {
        found = found || t == tag;
        return true;
      });
  return found;
}

} // namespace mscan::core
