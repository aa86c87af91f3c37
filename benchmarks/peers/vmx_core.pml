/*
 * vmx_core.pml -- the list + NMI + crash-VMCLEAR core of KVM VMX as a Promela model
 * for Spin: the peer that benchmarks/peers/spin_vs_explore.py runs beside
 * `vmxfuzz explore` on the same bound.
 *
 *   spin -a vmx_core.pml             reference (Linux 5.6: crash_vmclear_enabled_bitmap)
 *   spin -a -DPATCHED vmx_core.pml   patched (5.6 + seed 1/3: the crash path always walks)
 *   gcc -O2 -DSAFETY -o pan pan.c && ./pan -n
 *
 * Written from the project's semantics (vmx-model.md, sections 1, 3, 6.1-6.3, 7, 8) and
 * the vmxfuzz models (vmxfuzz/kernel/list.py, crash.py, smp.py; reference/vmx.py and
 * patched/vmx.py), not from kernel source.
 *
 * THE PROGRAM (= benchmarks/peers/core-program.json with `--setup 4`): 2 CPUs, one VM,
 * two vCPUs, i.e. two loaded_vmcs (vcpu0's vmcs01, vcpu1's vmcs01).  The setup ops
 * (module_load; create_vm; create_vcpu vcpu0 on CPU 0; create_vcpu vcpu1 on CPU 1) run
 * without choices in vmxfuzz; here `init` writes the state they leave behind:
 *   CPU 0's loaded_vmcss_on_cpu = [vcpu0], vcpu0's VMCS active + current on CPU 0;
 *   CPU 1's loaded_vmcss_on_cpu = [vcpu1], vcpu1's VMCS active + current on CPU 1;
 *   both CPUs in VMX root, IRQs on; reference: both crash_vmclear_enabled bits set.
 * The explored op is `run_vcpu vcpu1 on CPU 0`: the migration whose list_add the
 * seed's patch 1/3 is about.  CPU 0 runs vmx_vcpu_load_vmcs(vcpu1, 0), which IPIs
 * CPU 1 to run __loaded_vmcs_clear(vcpu1) (list_del there), then list_adds vcpu1 to
 * CPU 0's list and VMPTRLDs it.
 *
 * THE BOUND: every interleaving of the two CPUs' steps, and at most NMIS (1 by default;
 * 0 for a sanity run; more is refused) panic NMI (the NMI watchdog: nmi_panic) on either
 * CPU between any two of its steps while it runs kernel code (CPU 0's vCPU load; CPU 1's
 * IPI handler).  That is
 * vmxfuzz's `--nmis 1 --nmi-kinds panic --faults 0`.  A benign NMI changes no state
 * this model has, so it is not modelled.
 *
 * GRANULARITY: one Promela statement (or one d_step) per vmxfuzz step of the window:
 * each store of list_add / list_del in the kernel's order (spec section 1), each bitmap
 * bit, each VMCLEAR / VMPTRLD / VMXOFF, each load of a list walk, and the smp_rmb /
 * smp_wmb steps (no effect under SC, but an NMI can land before them, as in vmxfuzz).
 * Steps outside the window with no effect on this state (the host-state VMWRITEs,
 * preempt, IRQ-save and PT bookkeeping, CR4 shadow writes, the rest of the KVM_RUN
 * ioctl around the load: vcpu->mutex, VM entry, vcpu_put) are left out.
 *
 * THE PROPERTY: assertions, so that `./pan` (safety) stops at the first violation:
 *   kexec-active-vmcs   at machine_kexec no VMCS is active in any CPU's VMCS cache
 *                       (the reference bug leaves vcpu0's in CPU 0's, or vcpu1's in
 *                       CPU 1's);
 *   oops                a NULL / poison dereference in a list walk or list op, a walk
 *                       that reaches another list's head, VMCLEAR/VMPTRLD outside VMX
 *                       root;
 *   hang                a walk that never returns to its head;
 *   vmcs-active-on-two-cpus   VMPTRLD of a VMCS still active on the other CPU;
 *   list-corrupt        at the quiescent point after the load, a ring is malformed or
 *                       a VMCS is active on a CPU whose list does not hold it.
 */

#ifndef NMIS
#define NMIS 1
#endif
#if NMIS > 1
#error "NMIS > 1: a second panic NMI (panic()'s cmpxchg race, nmi_panic_self_stop) is not modelled"
#endif

#define NCPU   2
#define NVCPU  2
#define NNODE  4               /* list_heads: two per-CPU heads, two loaded_vmcs links */
#define HEAD(c)  (c)           /* &per_cpu(loaded_vmcss_on_cpu, c) */
#define LINK(v)  (2 + (v))     /* &vcpu<v>.vmcs01.loaded_vmcss_on_cpu_link */
#define VMCS_OF(node) ((node) - 2)   /* list_entry(node)->vmcs (VMCS index) */
#define VBIT(v)  (1 << (v))
#define OTHER(c) (1 - (c))     /* the one other CPU (NCPU == 2) */

#define NIL     255            /* NULL (zeroed memory), and "no VMCS" */
#define POISON1 254            /* LIST_POISON1 */
#define POISON2 253            /* LIST_POISON2 */
#define IS_PTR(p) ((p) < NNODE)

/* ---- state ------------------------------------------------------------------------ */
byte next[NNODE];              /* list_head.next */
byte prev[NNODE];              /* list_head.prev */
short lv_cpu[NVCPU];           /* loaded_vmcs->cpu, -1 = not loaded anywhere */
bit  lv_launched[NVCPU];       /* loaded_vmcs->launched */
byte current_vmcs[NCPU];       /* per_cpu(current_vmcs): a VMCS index or NIL */
byte vmcs_cache[NCPU];         /* hardware: bitmask of the VMCSes active on this CPU */
bit  vmx_root[NCPU];           /* post-VMXON, CR4.VMXE set */
bit  irqs_on[NCPU];
#ifndef PATCHED
bit  crash_vmclear_enabled[NCPU];  /* crash_vmclear_enabled_bitmap (5.6 only) */
#endif

/* smp_call_function_single(cpu, __loaded_vmcs_clear, lv, wait=1): one csd per CPU */
bit  ipi_pending[NCPU];
byte ipi_arg[NCPU];
bit  ipi_done;

/* NMIs and the crash */
byte nmis_left = NMIS;         /* the NMI budget (vmxfuzz --nmis) */
bit  in_kernel[NCPU];          /* running model code: where an NMI may be placed */
bit  nmi_pending[NCPU];        /* a watchdog NMI (nmi_panic) is pending on this CPU */
bit  crash_nmi[NCPU];          /* the crash shootdown NMI is pending on this CPU */
byte panic_cpu = NIL;
byte waiting_for_crash_ipi;

/* ---- include/linux/list.h (vmxfuzz/kernel/list.py) ------------------------------------ */
/* A dereference the CPU would fault on: NULL or LIST_POISON (an oops). */
#define DEREF_OK(p) IS_PTR(p)

/* list_add(new, head) = __list_add(new, head, head->next): four stores; the last
 * (WRITE_ONCE(head->next, new)) publishes the entry to forward walks. */
inline list_add(new, head) {
	d_step { nx = next[head]; assert(DEREF_OK(nx)); prev[nx] = new };  /* list_add:next_prev */
	next[new] = nx;                                                    /* list_add:new_next */
	prev[new] = head;                                                  /* list_add:new_prev */
	next[head] = new                                                   /* list_add:publish */
}

/* list_del(entry) = __list_del_entry (two stores, the second unlinks) + poisoning. */
inline list_del(entry) {
	d_step { nx = next[entry]; pv = prev[entry];
	         assert(DEREF_OK(nx) && DEREF_OK(pv)); prev[nx] = pv };   /* list_del:next_prev */
	next[pv] = nx;                                                     /* list_del:unlink */
	next[entry] = POISON1;                                             /* list_del:poison_next */
	prev[entry] = POISON2                                              /* list_del:poison_prev */
}

/* ---- VMX instructions (vmxfuzz/machine/hw.py; KVM's wrappers, vmxfuzz/kernel/vmx.py) -- */
/* vmcs_clear(): VMCLEAR v on CPU c (#UD outside VMX root: BUG, not rebooting). */
#define VMCLEAR(v, c) assert(vmx_root[c]); vmcs_cache[c] = vmcs_cache[c] & (255 - VBIT(v))

/* vmcs_load(): VMPTRLD v on CPU c; v still active on the other CPU is a violation. */
inline vmcs_load(v, c) {
	d_step {
		assert(vmx_root[c]);
		assert((vmcs_cache[OTHER(c)] & VBIT(v)) == 0);  /* vmcs-active-on-two-cpus */
		vmcs_cache[c] = vmcs_cache[c] | VBIT(v)
	}
}

/* ---- arch/x86/kvm/vmx/vmx.c (reference/vmx.py, patched/vmx.py) ------------------------ */
#ifndef PATCHED
/* crash_disable_local_vmclear / crash_enable_local_vmclear (5.6 only) */
#define crash_disable_local_vmclear(c) crash_vmclear_enabled[c] = 0  /* :clear_bit */
#define crash_enable_local_vmclear(c)  crash_vmclear_enabled[c] = 1  /* :set_bit */
#endif

/* crash_vmclear_local_loaded_vmcss(): list_for_each_entry over this CPU's list,
 * VMCLEAR of each entry's VMCS.  Reference: only if this CPU's bitmap bit is set. */
inline crash_vmclear_local_loaded_vmcss(c) {
#ifndef PATCHED
	if
	:: crash_vmclear_enabled[c] ->                 /* crash_vmclear_local_loaded_vmcss:test_bit */
#endif
		d_step { pos = next[HEAD(c)]; assert(DEREF_OK(pos)); hops = 0 };  /* list_for_each_entry:load */
		do
		:: pos == HEAD(c) -> break
		:: else ->
			d_step {
				assert(pos >= LINK(0));    /* list_entry() of another list's head: oops */
				assert(hops < NVCPU);      /* revisits an entry: the walk never ends (hang) */
				hops++;
				VMCLEAR(VMCS_OF(pos), c)   /* vmcs_clear:vmclear */
			};
			d_step { pos = next[pos]; assert(DEREF_OK(pos)) }  /* list_for_each_entry:load */
		od
#ifndef PATCHED
	:: else -> skip                                /* bit clear: the whole list is skipped */
	fi
#endif
}

/* __loaded_vmcs_clear(lv) on CPU c (the IPI handler loaded_vmcs_clear() sends).
 * Reference: bitmap bit cleared; list_del; smp_wmb; loaded_vmcs_init (VMCLEAR, cpu = -1,
 * launched = 0); bit set.  Patched: VMCLEAR first, then list_del; smp_wmb; cpu = -1;
 * launched = 0.  (No shadow VMCS in this program: the shadow VMCLEAR never runs.) */
inline __loaded_vmcs_clear(v, c) {
	if
	:: lv_cpu[v] != c -> skip                      /* __loaded_vmcs_clear:read_cpu */
	:: else ->
		d_step { if :: current_vmcs[c] == v -> current_vmcs[c] = NIL :: else fi };  /* :current_vmcs */
#ifndef PATCHED
		crash_disable_local_vmclear(c);
		list_del(LINK(v));
		skip;                                      /* smp_wmb:barrier (no effect under SC) */
		d_step { VMCLEAR(v, c) };                  /* loaded_vmcs_init: vmcs_clear:vmclear */
		lv_cpu[v] = -1;                            /* loaded_vmcs_init:cpu */
		lv_launched[v] = 0;                        /* loaded_vmcs_init:launched */
		crash_enable_local_vmclear(c)
#else
		d_step { VMCLEAR(v, c) };                  /* vmcs_clear:vmclear */
		list_del(LINK(v));
		skip;                                      /* smp_wmb:barrier (no effect under SC) */
		lv_cpu[v] = -1;                            /* __loaded_vmcs_clear:cpu */
		lv_launched[v] = 0                         /* __loaded_vmcs_clear:launched */
#endif
	fi
}

/* The oracle at a quiescent point (vmxfuzz/oracle.py, list-corrupt): every per-CPU list
 * is a well-formed ring, and every VMCS active on a CPU is on that CPU's list.  Not a
 * kernel step: it runs inside the d_step of the step that ends the op. */
inline check_quiescent() {
	c2 = 0;
	do
	:: c2 < NCPU ->
		pos = HEAD(c2); hops = 0; onlist = 0;
		do
		:: hops > NVCPU -> assert(false)       /* not a ring */
		:: else ->
			nx = next[pos];
			assert(IS_PTR(nx) && prev[nx] == pos);
			if
			:: nx == HEAD(c2) -> break
			:: else -> assert(nx >= LINK(0)); onlist = onlist | VBIT(VMCS_OF(nx)); pos = nx; hops++
			fi
		od;
		assert((vmcs_cache[c2] & (255 - onlist)) == 0);
		c2++
	:: else -> break
	od;
	c2 = 0    /* (a d_step may not end on a break) */
}

/* vmx_vcpu_load_vmcs(vcpu, cpu) on CPU c: the migration of loaded_vmcs v to CPU c. */
inline vmx_vcpu_load_vmcs(v, c) {
	already_loaded = (lv_cpu[v] == c);             /* vmx_vcpu_load_vmcs:read_cpu */
	if
	:: !already_loaded ->
		/* loaded_vmcs_clear(lv): read lv->cpu, IPI that CPU and wait */
		tcpu = lv_cpu[v];                          /* loaded_vmcs_clear:read_cpu */
		if
		:: tcpu != -1 ->
			assert(tcpu != c);   /* already_loaded was false: always a remote call here */
			d_step { ipi_arg[tcpu] = v; ipi_pending[tcpu] = 1 };  /* smp_call_function_single:send */
			ipi_done                               /* smp_call_function_single:wait */
		:: else -> skip
		fi;
		irqs_on[c] = 0;                            /* local_irq_disable:cli */
#ifndef PATCHED
		crash_disable_local_vmclear(c);
#endif
		skip;                                      /* smp_rmb:barrier (no effect under SC) */
		list_add(LINK(v), HEAD(c));
#ifndef PATCHED
		crash_enable_local_vmclear(c);
#endif
		irqs_on[c] = 1                             /* local_irq_enable:sti */
	:: else -> skip
	fi;
	if
	:: current_vmcs[c] != v ->                     /* vmx_vcpu_load_vmcs:read_current_vmcs */
		current_vmcs[c] = v;                       /* vmx_vcpu_load_vmcs:set_current_vmcs */
		vmcs_load(v, c)                            /* vmcs_load:vmptrld */
	:: else -> skip
	fi;
	/* (host-state VMWRITEs: no shared effect) */
	d_step {
		if :: !already_loaded -> lv_cpu[v] = c :: else fi;  /* vmx_vcpu_load_vmcs:set_cpu */
		in_kernel[c] = 0;                          /* the op ends: CPU c leaves kernel code */
		check_quiescent()
	}
}

/* ---- arch/x86/kernel/crash.c, asm/virtext.h, kernel/panic.c (vmxfuzz/kernel/crash.py) -- */
/* cpu_crash_vmclear_loaded_vmcss(): the RCU callback is set (vmx_init completed). */
#define cpu_crash_vmclear_loaded_vmcss(c) crash_vmclear_local_loaded_vmcss(c)

/* cpu_emergency_vmxoff(): if CR4.VMXE, VMXOFF (no fixup; VMXOFF does not flush the
 * VMCS cache). */
inline cpu_emergency_vmxoff(c) {
	if
	:: vmx_root[c] -> vmx_root[c] = 0             /* :read_cr4, then cpu_vmxoff:vmxoff */
	:: else -> skip
	fi
}

/* crash_nmi_callback() on a shot-down CPU: kdump_nmi_callback (crash VMCLEAR, emergency
 * VMXOFF), ack, halt forever (the interrupted code never resumes). */
inline crash_nmi_callback(c) {
	crash_nmi[c] = 0;
	cpu_crash_vmclear_loaded_vmcss(c);
	cpu_emergency_vmxoff(c);
	waiting_for_crash_ipi--                        /* crash_nmi_callback:ack; then halt */
}

/* nmi_panic() -> panic() -> __crash_kexec(): native_machine_crash_shutdown (IRQs off,
 * nmi_shootdown_cpus: NMI every other CPU and wait for their acks -- bounded: Spin's
 * `timeout` is vmxfuzz's "the wait expires when nothing else can run" --, crash VMCLEAR
 * and emergency VMXOFF here), then machine_kexec: the kexec check. */
inline nmi_panic(c) {
	d_step { nmi_pending[c] = 0; panic_cpu = c; irqs_on[c] = 0 };  /* nmi_panic/panic:cmpxchg_panic_cpu */
	waiting_for_crash_ipi = NCPU - 1;              /* nmi_shootdown_cpus:set_waiting */
	crash_nmi[OTHER(c)] = 1;                       /* nmi_shootdown_cpus:send_nmi */
	(waiting_for_crash_ipi == 0) || timeout;       /* nmi_shootdown_cpus:wait */
	cpu_crash_vmclear_loaded_vmcss(c);
	cpu_emergency_vmxoff(c);
	/* machine_kexec:start -- kexec-active-vmcs: every CPU's VMCS cache is empty */
	assert(vmcs_cache[0] == 0 && vmcs_cache[1] == 0)
}

/* ---- the CPUs ---------------------------------------------------------------------- */
/* CPU `me`: CPU 0 runs the op (KVM_RUN of vcpu1 -> vcpu_load -> vmx_vcpu_load ->
 * vmx_vcpu_load_vmcs), then idles; CPU 1 idles and takes the IPI (IPI context, IRQs
 * off).  An NMI is taken between any two steps: the `unless` escape has priority over
 * the next statement of the main sequence, and a panic or a shootdown never returns. */
proctype cpu(byte me) {
	byte nx, pv, pos, hops, c2, onlist;
	short tcpu;
	bit already_loaded;
	{
		if
		:: me == 0 -> vmx_vcpu_load_vmcs(1, 0)     /* run_vcpu vcpu1 on CPU 0 */
		:: else -> skip
		fi;
end_idle:
		do
		:: d_step { ipi_pending[me] && irqs_on[me] ->  /* the IPI is taken: IPI context */
		            ipi_pending[me] = 0; irqs_on[me] = 0; in_kernel[me] = 1 };
			__loaded_vmcs_clear(ipi_arg[me], me);
			d_step { ipi_done = 1; irqs_on[me] = 1; in_kernel[me] = 0 }  /* csd done */
		od
	} unless {
		if
		:: nmi_pending[me] -> nmi_panic(me)        /* the NMI watchdog: nmi_panic() */
		:: crash_nmi[me] -> crash_nmi_callback(me) /* the crash shootdown NMI */
		fi
	}
}

/* The NMI source: fires at most NMIS times, on a CPU running kernel code, at any point
 * of the interleaving; the CPU takes it before its next step (vmxfuzz: an NMI "before"
 * any labelled step). */
proctype watchdog() {
end:
	do
	:: d_step { nmis_left > 0 && panic_cpu == NIL && in_kernel[0] -> nmis_left--; nmi_pending[0] = 1 }
	:: d_step { nmis_left > 0 && panic_cpu == NIL && in_kernel[1] -> nmis_left--; nmi_pending[1] = 1 }
	od
}

/* The state the setup ops leave (module_load; create_vm; create_vcpu vcpu0 on CPU 0;
 * create_vcpu vcpu1 on CPU 1): hardware_enable on both CPUs (INIT_LIST_HEAD, reference:
 * crash_enable_local_vmclear, VMXON), each vCPU's vmcs01 loaded on its CPU (list_add,
 * VMPTRLD). */
init {
	atomic {
		next[HEAD(0)] = LINK(0); prev[HEAD(0)] = LINK(0);
		next[LINK(0)] = HEAD(0); prev[LINK(0)] = HEAD(0);
		next[HEAD(1)] = LINK(1); prev[HEAD(1)] = LINK(1);
		next[LINK(1)] = HEAD(1); prev[LINK(1)] = HEAD(1);
		lv_cpu[0] = 0; lv_cpu[1] = 1;
		current_vmcs[0] = 0; current_vmcs[1] = 1;
		vmcs_cache[0] = VBIT(0); vmcs_cache[1] = VBIT(1);
		vmx_root[0] = 1; vmx_root[1] = 1;
		irqs_on[0] = 1; irqs_on[1] = 1;
#ifndef PATCHED
		crash_vmclear_enabled[0] = 1; crash_vmclear_enabled[1] = 1;
#endif
		in_kernel[0] = 1;                          /* CPU 0 is about to run the op */
		run cpu(0); run cpu(1); run watchdog()
	}
}
