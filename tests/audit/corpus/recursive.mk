# SPDX-License-Identifier: MIT
# Clean: make -j2 with a recursive make (the jobserver's descriptors are
# passed on purpose, named in MAKEFLAGS).
all: a b sub
a b:
	@echo $@ > $(OUT)/$@.txt
sub: a
	@$(MAKE) -f $(firstword $(MAKEFILE_LIST)) OUT=$(OUT) c d
c d:
	@sort $(OUT)/a.txt > $(OUT)/$@.txt
.PHONY: all a b sub c d
