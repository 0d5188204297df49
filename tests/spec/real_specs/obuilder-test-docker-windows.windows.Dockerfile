#escape=`
FROM base
# A test comment
WORKDIR C:/src
RUN command1
SHELL [ "C:/Windows/System32/cmd.exe", "/c" ]
RUN command2 && `
    command3
COPY a b c
COPY a b c
ENV DEBUG="1"
USER Zaphod
COPY a b c
