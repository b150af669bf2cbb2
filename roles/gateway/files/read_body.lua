-- The gateway's one reading of a request body (roles/gateway/README.md, "One reading of every request").
--
-- vLLM reads the body with Python's json: for a duplicated key the last one wins, and escapes in keys and values are
-- decoded. lua-cjson (Debian's lua-cjson) reads JSON the same way, so the model this action hands to the scope and
-- route checks is the model vLLM runs. Whatever either reader could take differently is refused here instead:
-- anything lua-cjson refuses (other encodings, a byte-order mark, trailing bytes, NaN or Infinity, nesting deeper
-- than 128), a body that did not arrive whole or is larger than the gateway reads, and a model name that is not a
-- plain UTF-8 string without control characters.
--
-- Sets txn.model and txn.prefix (the conversation's opening, for balance prefix), or txn.body_status (400 or 413)
-- and txn.body_error (a fixed message, never a byte of the request).

local cjson = require("cjson")

local reader = cjson.new()
reader.decode_invalid_numbers(false)
reader.decode_max_depth(128)

local MAX_MODEL_BYTES = 256

local function refuse(txn, status, message)
    txn:set_var("txn.body_status", status)
    txn:set_var("txn.body_error", message)
end

-- The start of a message's content: a string, or the text parts of a list of parts.
local function opening(content, bytes)
    if type(content) == "string" then
        return content:sub(1, bytes)
    end
    if type(content) ~= "table" then
        return ""
    end
    local parts = {}
    for _, part in ipairs(content) do
        if type(part) == "table" and type(part.text) == "string" then
            parts[#parts + 1] = part.text
        end
    end
    return table.concat(parts, "\n"):sub(1, bytes)
end

-- The system (or developer) message and the one after it, or the first message alone, or the prompt: every turn
-- of one conversation has the same opening.
local function prefix(doc, bytes)
    local first, second, prompt = "", "", ""
    if type(doc.messages) == "table" and type(doc.messages[1]) == "table" then
        local m0 = doc.messages[1]
        first = opening(m0.content, bytes)
        if (m0.role == "system" or m0.role == "developer") and type(doc.messages[2]) == "table" then
            second = opening(doc.messages[2].content, bytes)
        end
    end
    if type(doc.prompt) == "string" then
        prompt = doc.prompt:sub(1, bytes)
    elseif type(doc.prompt) == "table" and type(doc.prompt[1]) == "string" then
        prompt = doc.prompt[1]:sub(1, bytes)
    end
    return "p|" .. first .. "|" .. second .. "|" .. prompt
end

core.register_action("vllm_fleet_read_body", { "http-req" }, function(txn, max_bytes, prefix_bytes)
    local limit = tonumber(max_bytes)
    local announced = tonumber(txn.f:req_hdr("content-length") or "")
    local available = txn.f:req_body_len() or 0
    -- An announced body beyond the limit got its 413 on the headers (haproxy.cfg). A chunked body's end is not
    -- announced: one that filled what the gateway reads may go on beyond it.
    if available >= limit then
        return refuse(txn, 413, "the request body is larger than the gateway reads")
    end
    if announced and available < announced then
        return refuse(txn, 400, "the request body did not arrive whole")
    end
    if txn.f:req_hdr("content-encoding") then
        return refuse(txn, 400, "the gateway reads only bodies without a content-encoding")
    end
    local ok, doc = pcall(reader.decode, txn.sf:req_body() or "")
    if not ok then
        return refuse(txn, 400, "the request body is not JSON the gateway reads as vLLM does (UTF-8 without a byte-order "
                      .. "mark, no NaN or Infinity, nested at most 128 deep, nothing after it)")
    end
    if type(doc) ~= "table" then
        return refuse(txn, 400, "the request body is not a JSON object")
    end
    local model = doc.model
    if type(model) ~= "string" or model == "" then
        return refuse(txn, 400, "the request names no model")
    end
    if #model > MAX_MODEL_BYTES or not utf8.len(model) or model:find("%c") then
        return refuse(txn, 400, "the request's model is not a name the gateway serves")
    end
    txn:set_var("txn.model", model)
    txn:set_var("txn.prefix", prefix(doc, tonumber(prefix_bytes)))
end, 2)
