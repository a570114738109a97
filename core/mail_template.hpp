#pragma once
// $tag$ templates of outgoing mail ([smtp] subject_template / body_template). A '$' that does
// not open a "$lower_case_name$" is literal text ("$5 off" stays as written).
#include "common/expected.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mscan::core {

// Replaces every $tag$ with value(tag); a tag value() does not know (nullopt) is an error
// naming it. value() is called once per occurrence.
expected<std::string, std::string> expand_template(
    std::string_view tpl, const std::function<std::optional<std::string>(std::string_view)>& value);

// Whether `tpl` contains the tag (as a tag, not as literal text).
bool template_uses(std::string_view tpl, std::string_view tag);

} // namespace mscan::core
