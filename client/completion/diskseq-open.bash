# bash completion for diskseq-open(1): its options, column names and attribute keys, and
# the DEVICEs diskseqd serves now (from `diskseq-open --list`, with the --socket given on
# the line). After `--`, COMMAND and its ARGs complete as that command's own would.
# Install: copy to /usr/share/bash-completion/completions/diskseq-open (or
# ~/.local/share/bash-completion/completions/diskseq-open); see docs/install.md.

_diskseq_open()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null 2>&1; then
        _init_completion -n := || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local i listing= socket=()
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --)
                if declare -F _command_offset >/dev/null 2>&1; then
                    _command_offset $((i + 1))
                elif ((cword == i + 1)); then
                    COMPREPLY=($(compgen -c -- "$cur"))
                else
                    COMPREPLY=($(compgen -f -- "$cur"))
                fi
                return
                ;;
            --socket)
                # Without bash-completion's helpers, --socket=PATH arrives split at the =.
                if [[ ${words[i + 1]} == = ]]; then socket=(--socket "${words[i + 2]}"); else socket=(--socket "${words[i + 1]}"); fi
                ;;
            --socket=*) socket=("${words[i]}") ;;
            --list | -l | -[A-Za-z]*l*) listing=1 ;;
        esac
    done

    case $prev in
        --socket)
            COMPREPLY=($(compgen -f -- "$cur"))
            return
            ;;
        --wait | --fd)
            return
            ;;
        -e | --expect)
            COMPREPLY=($(compgen -W "size= ro= removable= partition= start= loop/backing_file= loop/offset=
                loop/sizelimit= loop/autoclear= loop/partscan= dm/name= dm/uuid= wwid= device/serial=
                device/model= device/vendor= queue/logical_block_size=" -- "$cur"))
            compopt -o nospace 2>/dev/null
            return
            ;;
        -o | --output)
            # A comma-separated list, maybe after a +: complete its last item.
            local item=${cur##*,} prefix=${cur%"${cur##*,}"}
            if [[ -z $prefix && $item == +* ]]; then
                prefix=+
                item=${item#+}
            fi
            COMPREPLY=($(compgen -P "$prefix" -W "NAME DEVICE DISKSEQ PARTN PATH MAJ:MIN RM SIZE RO TYPE DRIVER BACK-FILE" -- "$item"))
            compopt -o nospace 2>/dev/null
            declare -F __ltrim_colon_completions >/dev/null 2>&1 && __ltrim_colon_completions "$cur"
            return
            ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--rw -w --wo --exclusive -x --direct --sync --dsync --wait --expect -e --fd
            --socket --list -l --json -J --bytes -b --noheadings -n --output -o --watch --status --preload
            --help -h --version -V --" -- "$cur"))
        return
    fi

    # DEVICEs: the diskseqs served now (and, for --list, device paths and files too).
    local served
    served=$("${words[0]}" "${socket[@]}" --list --noheadings --output DEVICE${listing:+,PATH} 2>/dev/null)
    COMPREPLY=($(compgen -W "$served" -- "$cur"))
    [[ -n $listing ]] && COMPREPLY+=($(compgen -f -- "$cur"))
    return 0
} &&
    complete -F _diskseq_open diskseq-open
