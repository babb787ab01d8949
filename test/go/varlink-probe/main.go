// varlink-probe drives a Varlink service through github.com/varlink/go (Debian's
// golang-github-varlink-go-dev), an implementation nobody on this project wrote, and prints
// what it got as one JSON line for the test that runs it (test/varlink-go.test.ts).
//
//	varlink-probe info SOCKET
//	varlink-probe describe SOCKET INTERFACE
//	varlink-probe calls SOCKET '[{"method": "...", "parameters": {...}, "more": true, "oneway": false}, ...]'
//
// "calls" sends every call before reading any reply (the library allows that: Send
// returns the function that receives its replies), then receives them in call order.
// The library ignores ancillary data, so fds passed with a reply are not seen here.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"
)

type call struct {
	Method     string          `json:"method"`
	Parameters json.RawMessage `json:"parameters"`
	More       bool            `json:"more"`
	Oneway     bool            `json:"oneway"`
}

type reply struct {
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Continues  bool            `json:"continues,omitempty"`
	Error      string          `json:"error,omitempty"`
	Failure    string          `json:"failure,omitempty"`
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: varlink-probe info|describe|calls SOCKET [ARG]")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := varlink.NewConnection(ctx, "unix:"+os.Args[2])
	if err != nil {
		fail("connect: " + err.Error())
	}
	defer conn.Close()
	switch os.Args[1] {
	case "info":
		var vendor, product, version, url string
		var interfaces []string
		if err := conn.GetInfo(ctx, &vendor, &product, &version, &url, &interfaces); err != nil {
			fail("GetInfo: " + describe(err).Error)
		}
		print(map[string]interface{}{"vendor": vendor, "product": product, "version": version, "url": url, "interfaces": interfaces})
	case "describe":
		description, err := conn.GetInterfaceDescription(ctx, os.Args[3])
		if err != nil {
			print(map[string]interface{}{"error": describe(err)})
			return
		}
		print(parse(description))
	case "calls":
		var calls []call
		if err := json.Unmarshal([]byte(os.Args[3]), &calls); err != nil {
			fail("calls: " + err.Error())
		}
		print(pipeline(ctx, conn, calls))
	default:
		fail("unknown command " + os.Args[1])
	}
}

// pipeline sends every call, then collects each one's replies in order.
func pipeline(ctx context.Context, conn *varlink.Connection, calls []call) [][]reply {
	type pending func(context.Context, interface{}) (uint64, error)
	receivers := make([]pending, len(calls))
	results := make([][]reply, len(calls))
	for i, c := range calls {
		var flags uint64
		if c.More {
			flags |= varlink.More
		}
		if c.Oneway {
			flags |= varlink.Oneway
		}
		var parameters interface{}
		if len(c.Parameters) > 0 {
			parameters = c.Parameters
		}
		receive, err := conn.Send(ctx, c.Method, parameters, flags)
		if err != nil {
			results[i] = []reply{{Failure: "send: " + err.Error()}}
			continue
		}
		if !c.Oneway {
			receivers[i] = receive
		}
	}
	for i, receive := range receivers {
		if receive == nil {
			if results[i] == nil {
				results[i] = []reply{}
			}
			continue
		}
		for {
			var out json.RawMessage
			flags, err := receive(ctx, &out)
			if err != nil {
				results[i] = append(results[i], describe(err))
				break
			}
			results[i] = append(results[i], reply{Parameters: out, Continues: flags&varlink.Continues != 0})
			if flags&varlink.Continues == 0 {
				break
			}
		}
	}
	return results
}

// describe turns what the library returns for an error reply back into its name and parameters.
func describe(err error) reply {
	encode := func(v interface{}) json.RawMessage {
		b, _ := json.Marshal(v)
		return b
	}
	switch e := err.(type) {
	case *varlink.Error:
		r := reply{Error: e.Name}
		if raw, ok := e.Parameters.(*json.RawMessage); ok && raw != nil {
			r.Parameters = *raw
		}
		return r
	case *varlink.InvalidParameter:
		return reply{Error: "org.varlink.service.InvalidParameter", Parameters: encode(e)}
	case *varlink.MethodNotFound:
		return reply{Error: "org.varlink.service.MethodNotFound", Parameters: encode(e)}
	case *varlink.InterfaceNotFound:
		return reply{Error: "org.varlink.service.InterfaceNotFound", Parameters: encode(e)}
	case *varlink.MethodNotImplemented:
		return reply{Error: "org.varlink.service.MethodNotImplemented", Parameters: encode(e)}
	default:
		return reply{Failure: err.Error()}
	}
}

// parse runs the library's IDL parser over a description and lists what it found. This
// parser accepts only lower-case interface names, where systemd (and varlink.org since)
// allow an upper-case last part ("io.systemd.StorageProvider"): if the text is refused,
// it is parsed again with the name lowered, and the result says so.
func parse(description string) map[string]interface{} {
	result := map[string]interface{}{}
	parsed, err := idl.New(description)
	if err != nil {
		result["parseError"] = err.Error()
		lines := strings.SplitN(description, "\n", -1)
		for i, line := range lines {
			if strings.HasPrefix(line, "interface ") {
				lines[i] = strings.ToLower(line)
				break
			}
		}
		parsed, err = idl.New(strings.Join(lines, "\n"))
		if err != nil {
			result["parseErrorLowered"] = err.Error()
			return result
		}
		result["parsedWithLoweredName"] = true
	}
	result["name"] = parsed.Name
	methods := map[string]interface{}{}
	for _, m := range parsed.Methods {
		methods[m.Name] = map[string]interface{}{"in": fields(m.In), "out": fields(m.Out)}
	}
	result["methods"] = methods
	errors := map[string]interface{}{}
	for _, e := range parsed.Errors {
		errors[e.Name] = fields(e.Type)
	}
	result["errors"] = errors
	types := map[string]interface{}{}
	for _, a := range parsed.Aliases {
		types[a.Name] = fields(a.Type)
	}
	result["types"] = types
	return result
}

// fields renders a struct's or enum's fields as "name: type" (enum values as their name).
func fields(t *idl.Type) []string {
	out := []string{}
	if t == nil {
		return out
	}
	for _, f := range t.Fields {
		if f.Type == nil {
			out = append(out, f.Name)
		} else {
			out = append(out, f.Name+": "+typeName(f.Type))
		}
	}
	return out
}

func typeName(t *idl.Type) string {
	switch t.Kind {
	case idl.TypeBool:
		return "bool"
	case idl.TypeInt:
		return "int"
	case idl.TypeFloat:
		return "float"
	case idl.TypeString:
		return "string"
	case idl.TypeObject:
		return "object"
	case idl.TypeArray:
		return "[]" + typeName(t.ElementType)
	case idl.TypeMap:
		return "[string]" + typeName(t.ElementType)
	case idl.TypeMaybe:
		return "?" + typeName(t.ElementType)
	case idl.TypeAlias:
		return t.Alias
	default:
		return fmt.Sprintf("kind%d", t.Kind)
	}
}

func print(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(err.Error())
	}
	fmt.Println(string(b))
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "varlink-probe: "+message)
	os.Exit(2)
}
